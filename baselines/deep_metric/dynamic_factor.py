"""The "dynamic learning rate" a_lr of the A_ losses (A_BatchAll, A_hard_pair, A_triplet).

Source: github bnulihaixia/Deep_metric (source document 003):

    pos_logit = sum_p exp(alpha * (1 - d(i, p)))     over all positives p of anchor i
    neg_logit = sum_n exp(alpha * (1 - d(i, n)))     over all negatives n of anchor i
    a_lr_i    = 1 - pos_logit / (pos_logit + neg_logit)        (detached: `.data[0]` in the source)

An anchor whose neighbourhood is already dominated by its positives gets a small factor. Computed in log
space, a_lr = sigmoid(logsumexp_neg - logsumexp_pos), which cannot overflow for any alpha.
"""
from __future__ import annotations

import torch

from .pairs import masked_logsumexp


def dynamic_factor(dist: torch.Tensor, pos_mask: torch.Tensor, neg_mask: torch.Tensor,
                   alpha: float) -> torch.Tensor:
    """a_lr per anchor, no gradient. dist, pos_mask, neg_mask: B x B -> B (0.5 placeholder on empty rows)."""
    logits = alpha * (1.0 - dist.detach())  # B x B
    lse_pos, _ = masked_logsumexp(logits, pos_mask)
    lse_neg, _ = masked_logsumexp(logits, neg_mask)
    return torch.sigmoid(lse_neg - lse_pos)  # B
