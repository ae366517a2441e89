"""GaussianMetric: batch-level pair selection relative to the mean of the selected pairs.

Source: GaussianMetricLoss of github bnulihaixia/Deep_metric (source document 003: "in the code, there's
nothing about Gaussian. The main idea is to select the neg/pos pair according to the mean samples"). Over
all ordered pairs of the batch, on Euclidean distances:

    m = floor(0.2 |positive pairs|)       (the source's len(pos) // 5)
    P = the m smallest positive distances,  N = the m smallest negative distances
    pos_point = mean(P),  neg_point = mean(N)
    loss = mean(P[P > neg_point]) - mean(N[N < pos_point])      (a missing side contributes 0)

Notation -> code: 0.2 -> `select_fraction`. One number per batch ('already_reduced' for pml). A batch
with m = 0 or without negative pairs gives the zero loss.
"""
from __future__ import annotations

import math

from .base import DeepMetricLoss
from .pairs import euclidean_distances, masked_mean, pair_masks


class GaussianMetricLoss(DeepMetricLoss):
    """Mean of the selected positives above the negatives' mean minus the converse. select_fraction 0.2."""

    def __init__(self, select_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < select_fraction <= 1.0:
            raise ValueError(f"select_fraction must be in (0, 1], got {select_fraction}")
        self.select_fraction = float(select_fraction)

    def loss_dict(self, embeddings, labels, indices_tuple):
        dist = euclidean_distances(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        pos_dist, neg_dist = dist[pos], dist[neg]  # all ordered pairs, flattened
        num = math.floor(pos_dist.numel() * self.select_fraction + 1e-9)
        if num == 0 or neg_dist.numel() == 0:
            return self.zero_losses()
        near_pos = pos_dist.topk(num, largest=False).values  # P
        near_neg = neg_dist.topk(min(num, neg_dist.numel()), largest=False).values  # N
        pos_point, neg_point = near_pos.mean().detach(), near_neg.mean().detach()
        loss = masked_mean(near_pos, near_pos > neg_point) - masked_mean(near_neg, near_neg < pos_point)
        return self.scalar_dict(loss)
