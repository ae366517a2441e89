"""Triplet (Deep_metric's): soft-plus triplets on the relative distance, kept when nearly violated.

Source: Triplet / A_triplet of github bnulihaixia/Deep_metric (source document 003):

    triplet_mat = log(exp(beta * (d(i, p) - d(i, n))) + 1),     triplet_mask = triplet_mat > 0.65

Notation -> code: beta -> `beta`, 0.65 -> `mask_threshold`, d -> Euclidean `dist`. Since
log(1 + e^0) = 0.693, the mask keeps the triplets whose positive is not clearly closer than the negative
(d(i,p) - d(i,n) > log(e^0.65 - 1) / beta). Every positive meets every negative of its anchor, as in
BatchAll (B x B x B tensors). Reading of what the document leaves open: the kept entries are averaged over
their number, the reduction of BatchAll in the same source; beta defaults to 20, the A_ family's default
(AHardPair).
A_triplet (a_triplet.py) weights each anchor's triplets by the dynamic factor a_lr.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DeepMetricLoss
from .pairs import euclidean_distances, pair_masks


class DMTripletLoss(DeepMetricLoss):
    """Mean of softplus(beta (d+ - d-)) over the triplets where it exceeds 0.65."""

    def __init__(self, beta: float = 20.0, mask_threshold: float = 0.65, **kwargs):
        super().__init__(**kwargs)
        self.beta, self.mask_threshold = float(beta), float(mask_threshold)

    def anchor_weights(self, dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Weight of each anchor's triplets: 1 here, a_lr in A_triplet. -> B."""
        return torch.ones_like(dist[:, 0])

    def loss_dict(self, embeddings, labels, indices_tuple):
        dist = euclidean_distances(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        soft = F.softplus(self.beta * (dist.unsqueeze(2) - dist.unsqueeze(1)))  # B x B(p) x B(n)
        keep = pos.unsqueeze(2) & neg.unsqueeze(1) & (soft > self.mask_threshold)
        weights = self.anchor_weights(dist, pos, neg)[:, None, None]  # B x 1 x 1
        return self.triplet_dict(weights * soft, keep)
