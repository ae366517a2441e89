"""BinDeviance, branch variant: binomial deviance on inner products, per slice ("branch") of the embedding.

Source: BinDevianceLoss and BinBranchLoss of github bnulihaixia/Deep_metric (source document 003). On the
similarity matrix s = x x^T (not the Euclidean distance), for anchor i with smallest positive
similarity s_min(i):

    hard negatives  n with s(i, n) > s_min(i) - 0.05
    pos_loss_i = mean_p log(1 + exp(-2 (s(i, p) - margin)))
    neg_loss_i = 0.04 * mean_{hard n} log(1 + exp(50 (s(i, n) - margin)))
    loss_i = pos_loss_i + neg_loss_i, or 0 when no negative is hard (the source skips the row, n counts)

The branch variant cuts the embedding into `num_branches` contiguous slices (the source's
slice=[0, 170, 341, 512]: three near-equal parts) and averages the slices' losses.
Notation -> code: 2 -> `pos_scale`, 50 -> `neg_scale`, 0.04 -> `neg_weight`, 0.05 -> `hard_gap`,
margin -> `margin` (0.5). Reading of an open detail: each slice is L2-normalised
(`normalize_branches=True`) so that the absolute constants keep the meaning they have for the unit-norm
whole embedding ("the regularized case" of the document); False uses the raw slices as the source does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DeepMetricLoss
from .pairs import embedding_slices, inner_products, masked_mean, masked_min, pair_masks


class BinDevianceBranchLoss(DeepMetricLoss):
    """Binomial deviance with hard negatives above s_min - 0.05, averaged over embedding slices."""

    def __init__(self, margin: float = 0.5, pos_scale: float = 2.0, neg_scale: float = 50.0,
                 neg_weight: float = 0.04, hard_gap: float = 0.05, num_branches: int = 3,
                 normalize_branches: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.margin, self.pos_scale, self.neg_scale = float(margin), float(pos_scale), float(neg_scale)
        self.neg_weight, self.hard_gap = float(neg_weight), float(hard_gap)
        self.num_branches, self.normalize_branches = int(num_branches), bool(normalize_branches)

    def loss_dict(self, embeddings, labels, indices_tuple):
        sim = inner_products(embedding_slices(embeddings, self.num_branches, self.normalize_branches))  # S x B x B
        pos, neg = pair_masks(labels, indices_tuple)  # B x B, shared by the slices
        pos, neg = pos.expand_as(sim), neg.expand_as(sim)
        s_min = masked_min(sim, pos).detach()  # S x B: the selection rule takes no gradient
        hard = neg & (sim > s_min.unsqueeze(-1) - self.hard_gap)  # S x B x B
        pos_loss = masked_mean(F.softplus(-self.pos_scale * (sim - self.margin)), pos)  # S x B
        neg_loss = self.neg_weight * masked_mean(F.softplus(self.neg_scale * (sim - self.margin)), hard)
        rows = torch.where(hard.any(-1), pos_loss + neg_loss, torch.zeros_like(pos_loss))  # S x B
        return self.element_dict(rows.mean(0), pos[0].any(1) & neg[0].any(1))
