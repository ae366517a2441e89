"""A_hard_pair: soft hinges on absolute distance limits, weighted by the dynamic factor a_lr.

Source: AHardPair of github bnulihaixia/Deep_metric (source document 003). For anchor i

    pos_loss = log sum_p exp(beta * (d(i, p) - 0.8))     positives farther than 0.8 are hard
    neg_loss = log sum_n exp(beta * (1.1 - d(i, n)))     negatives closer than 1.1 are hard
    loss_i   = a_lr_i * (pos_loss + neg_loss),           loss = mean over anchors

Notation -> code: 0.8 -> `pos_limit`, 1.1 -> `neg_limit`, beta -> `beta`, alpha (of a_lr) -> `alpha`;
d is the Euclidean distance. Defaults alpha 40, beta 20 are the source's. Note the log-sum-exp has no
"1 +", as in the source, so a row's loss can be negative once all its pairs are inside the limits.
"""
from __future__ import annotations

from .base import DeepMetricLoss
from .dynamic_factor import dynamic_factor
from .pairs import euclidean_distances, masked_logsumexp, pair_masks


class AHardPairLoss(DeepMetricLoss):
    """a_lr-weighted log-sum-exp hinges at the absolute limits 0.8 (positives) and 1.1 (negatives)."""

    def __init__(self, alpha: float = 40.0, beta: float = 20.0, pos_limit: float = 0.8,
                 neg_limit: float = 1.1, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.beta = float(alpha), float(beta)
        self.pos_limit, self.neg_limit = float(pos_limit), float(neg_limit)

    def loss_dict(self, embeddings, labels, indices_tuple):
        dist = euclidean_distances(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        pos_loss, has_pos = masked_logsumexp(self.beta * (dist - self.pos_limit), pos)  # B
        neg_loss, has_neg = masked_logsumexp(self.beta * (self.neg_limit - dist), neg)  # B
        a_lr = dynamic_factor(dist, pos, neg, self.alpha)  # B, detached
        return self.element_dict(a_lr * (pos_loss + neg_loss), has_pos & has_neg)
