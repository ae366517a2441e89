"""BatchHard: the hardest positive and the hardest negative of every anchor, with a margin hinge.

Source: BatchHardLoss of github bnulihaixia/Deep_metric (source document 003):

    hard_pos_i = max_p d(i, p),   hard_neg_i = min_n d(i, n),   loss_i = max(0, hard_pos_i - hard_neg_i + margin)

Notation -> code: d -> Euclidean `dist`, margin -> `margin` (the source class's default, 1). The source
sums loss_i over the batch; here the per-anchor hinges go to pml as 'element' losses and the default
MeanReducer averages them, so the scale does not grow with the batch size (pass
reducer=SumReducer() for the source's sum). Anchors with no positive or no negative are left out.
"""
from __future__ import annotations

from .base import DeepMetricLoss
from .pairs import euclidean_distances, masked_max, masked_min, pair_masks


class BatchHardLoss(DeepMetricLoss):
    """Per-anchor hinge between the farthest positive and the closest negative. margin 1."""

    def __init__(self, margin: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)

    def loss_dict(self, embeddings, labels, indices_tuple):
        dist = euclidean_distances(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        hard_pos = masked_max(dist, pos)  # B
        hard_neg = masked_min(dist, neg)  # B
        losses = (hard_pos - hard_neg + self.margin).clamp_min(0.0)
        return self.element_dict(losses, pos.any(1) & neg.any(1))
