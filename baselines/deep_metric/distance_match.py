"""DistanceMatch: the three nearest positives matched to graded base distances, drawn hard negatives.

Source: DistanceMatchLoss of github bnulihaixia/Deep_metric (source document 003). On Euclidean
distances, for anchor i with class size m (num_instances):

    P_i = its 3 closest positives, ascending: d_1 <= d_2 <= d_3
    N_i = 3 m negatives drawn without replacement with probability exp((d - mean)^2 / (2 std^2)) over i's
          negatives, kept when d < d_3 + 0.05
    pos_loss_i = mean_k (1 / mul_k) log(1 + exp(d_k - base_k)),  base = (0.95, 1.05, 1.12), mul = (4, 8, 16)
    neg_loss_i = 0.02 mean_{N_i} log(1 + exp(50 (margin - d)))
    loss_i = pos_loss_i + neg_loss_i when N_i is not empty, else 0;   loss = mean over anchors

Notation -> code: base -> `bases`, mul -> `muls`, margin -> `margin` (1), 0.05 -> `hard_gap`,
0.02 / 50 -> `neg_weight` / `neg_scale`, 3 (negatives per instance) -> `neg_samples_per_instance`.
An anchor with fewer than 3 positives uses the ones it has (the first bases) and its largest as d_3.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DeepMetricLoss
from .pairs import euclidean_distances, masked_max, masked_mean, pair_masks, smallest_k
from .sampling import gaussian_logits, make_generator, sample_without_replacement


class DistanceMatchLoss(DeepMetricLoss):
    """Graded soft-plus targets for the closest positives plus a steep hinge on drawn hard negatives."""

    def __init__(self, margin: float = 1.0, bases: tuple[float, ...] = (0.95, 1.05, 1.12),
                 muls: tuple[float, ...] = (4.0, 8.0, 16.0), hard_gap: float = 0.05, neg_weight: float = 0.02,
                 neg_scale: float = 50.0, neg_samples_per_instance: int = 3, favour_tails: bool = True,
                 seed: int | None = 0, generator: torch.Generator | None = None, **kwargs):
        super().__init__(**kwargs)
        if len(bases) != len(muls) or len(bases) == 0:
            raise ValueError(f"bases {bases} and muls {muls} must be non-empty and of the same length")
        self.margin, self.hard_gap = float(margin), float(hard_gap)
        self.bases, self.muls = tuple(float(b) for b in bases), tuple(float(m) for m in muls)
        self.neg_weight, self.neg_scale = float(neg_weight), float(neg_scale)
        self.neg_samples_per_instance, self.favour_tails = int(neg_samples_per_instance), bool(favour_tails)
        self.generator = generator if generator is not None else make_generator(seed)

    def loss_dict(self, embeddings, labels, indices_tuple):
        dist = euclidean_distances(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        near, near_keep = smallest_k(dist, pos, len(self.bases))  # B x k, ascending
        k = near.shape[1]
        bases = torch.tensor(self.bases[:k], dtype=dist.dtype, device=dist.device)  # k
        inv_muls = 1.0 / torch.tensor(self.muls[:k], dtype=dist.dtype, device=dist.device)  # k
        pos_loss = masked_mean(inv_muls * F.softplus(near - bases), near_keep)  # B
        reach = masked_max(near, near_keep).detach()  # B: d_3 (or the largest positive there is)
        num = self.neg_samples_per_instance * (pos.sum(1) + 1)  # B: 3 * num_instances
        drawn = sample_without_replacement(gaussian_logits(dist, neg, self.favour_tails), neg, num, self.generator)
        kept = drawn & (dist < reach.unsqueeze(1) + self.hard_gap)  # B x B
        neg_loss = self.neg_weight * masked_mean(F.softplus(self.neg_scale * (self.margin - dist)), kept)
        losses = torch.where(kept.any(1), pos_loss + neg_loss, torch.zeros_like(pos_loss))
        return self.element_dict(losses, pos.any(1) & neg.any(1))
