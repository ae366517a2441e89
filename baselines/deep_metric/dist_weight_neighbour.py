"""DistWeightNeighbour: the nearest positives against Gaussian-probability drawn negatives, soft-plus hinges.

Source: DistWeightNeighbourLoss of github bnulihaixia/Deep_metric (source document 003). On Euclidean
distances, for anchor i:

    P_i = its `num_pos` (3) closest positives
    N_i = negatives drawn without replacement, as many as i has positives (num_instances - 1), with
          probability exp((d - mean)^2 / (2 std^2)) over i's negatives, then kept when d < max(P_i) + 0.05
    loss_i = 0.5 mean_{P_i} log(1 + exp(2 (d - base))) + 0.05 mean_{N_i} log(1 + exp(20 (base - d)))
             when N_i is not empty, else 0 (the source skips the row; the mean still counts it)

Notation -> code: base -> `margin` (1), 3 -> `num_pos`, 0.05 -> `hard_gap`, 0.5 / 2 -> `pos_weight` /
`pos_scale`, 0.05 / 20 -> `neg_weight` / `neg_scale`. BDW (bdw_dist_weight_neighbour.py) applies the same
loss to slices of the embedding; `row_losses` takes any leading slice dimension for that.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DeepMetricLoss
from .pairs import euclidean_distances, masked_max, masked_mean, pair_masks, smallest_k
from .sampling import gaussian_logits, make_generator, sample_without_replacement


class DistWeightNeighbourLoss(DeepMetricLoss):
    """Closest positives vs drawn hard negatives around a constant base distance 1."""

    def __init__(self, margin: float = 1.0, num_pos: int = 3, hard_gap: float = 0.05, pos_weight: float = 0.5,
                 pos_scale: float = 2.0, neg_weight: float = 0.05, neg_scale: float = 20.0,
                 favour_tails: bool = True, seed: int | None = 0, generator: torch.Generator | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if num_pos < 1:
            raise ValueError(f"num_pos must be >= 1, got {num_pos}")
        self.margin, self.num_pos, self.hard_gap = float(margin), int(num_pos), float(hard_gap)
        self.pos_weight, self.pos_scale = float(pos_weight), float(pos_scale)
        self.neg_weight, self.neg_scale = float(neg_weight), float(neg_scale)
        self.favour_tails = bool(favour_tails)
        self.generator = generator if generator is not None else make_generator(seed)

    def row_losses(self, dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """dist: ... x B x B, pos / neg: B x B -> loss of each row ... x B (0 where no negative is kept)."""
        pos, neg = pos.expand_as(dist), neg.expand_as(dist)
        near, near_keep = smallest_k(dist, pos, self.num_pos)  # ... x B x k: P_i, ascending
        reach = masked_max(near, near_keep).detach()  # ... x B: max(P_i)
        num = pos.sum(-1)  # ... x B: num_instances - 1
        drawn = sample_without_replacement(gaussian_logits(dist, neg, self.favour_tails), neg, num, self.generator)
        kept = drawn & (dist < reach.unsqueeze(-1) + self.hard_gap)  # ... x B x B: N_i
        pos_loss = self.pos_weight * masked_mean(F.softplus(self.pos_scale * (near - self.margin)), near_keep)
        neg_loss = self.neg_weight * masked_mean(F.softplus(self.neg_scale * (self.margin - dist)), kept)
        return torch.where(kept.any(-1), pos_loss + neg_loss, torch.zeros_like(pos_loss))

    def loss_dict(self, embeddings, labels, indices_tuple):
        pos, neg = pair_masks(labels, indices_tuple)
        losses = self.row_losses(euclidean_distances(embeddings), pos, neg)  # B
        return self.element_dict(losses, pos.any(1) & neg.any(1))
