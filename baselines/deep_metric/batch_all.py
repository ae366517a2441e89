"""BatchAll: every (anchor, positive, negative) triplet of the batch with a margin hinge.

Source: BatchAll of github bnulihaixia/Deep_metric (source document 003). For anchor i the source repeats
its positive-distance row and its negative-distance row so that every positive meets every negative once
("pos num : neg num = 1:1 by repetition"), then

    triplet_mat = d(i, p) - d(i, n) + margin,    valid = triplet_mat > 0,
    loss = sum of valid entries over all anchors / number of valid entries.

Notation -> code: d -> `dist` (Euclidean), margin -> `margin`. Here the pairing is the B x B x B mask
pos[i, p] & neg[i, n] instead of the repetition, so classes may have any size; the kept triplets go to pml
as 'triplet' losses and the default MeanReducer divides by their number, as the source does. The mask
and the hinge are B x B x B tensors (B = 256: 17M entries, about 0.1 GB).
A_BatchAll (a_batch_all.py) multiplies each anchor's triplets by the detached dynamic factor a_lr.
"""
from __future__ import annotations

import torch

from .base import DeepMetricLoss
from .pairs import euclidean_distances, pair_masks


class BatchAllLoss(DeepMetricLoss):
    """Mean margin hinge over the triplets that violate it. margin: the source's default 0.02."""

    def __init__(self, margin: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)

    def anchor_weights(self, dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Weight of each anchor's triplets: 1 here, a_lr in A_BatchAll. -> B."""
        return torch.ones_like(dist[:, 0])

    def loss_dict(self, embeddings, labels, indices_tuple):
        dist = euclidean_distances(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        hinge = dist.unsqueeze(2) - dist.unsqueeze(1) + self.margin  # B x B(p) x B(n): d(i,p) - d(i,n) + m
        keep = pos.unsqueeze(2) & neg.unsqueeze(1) & (hinge > 0)
        weights = self.anchor_weights(dist, pos, neg)[:, None, None]  # B x 1 x 1
        return self.triplet_dict(weights * hinge, keep)
