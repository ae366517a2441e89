"""DistWeightContrastive: contrastive hinges at constant limits on Gaussian-probability drawn negatives.

Source: DistWeightContrastiveLoss of github bnulihaixia/Deep_metric (source document 003: "Gaussian
Probability to select, with constant limit"). On Euclidean distances, for anchor i:

    negatives drawn without replacement, as many as i has positives (the source's num_instances - 1),
    with probability exp((d - mean)^2 / (2 std^2)), mean and std over i's negatives (sampling.py)
    loss_i = mean_p max(0, d(i, p) - 0.7) + mean_{drawn n} max(0, 1.2 - d(i, n)),    loss = mean over anchors

Notation -> code: 0.7 -> `pos_limit`, 1.2 -> `neg_limit`, the number drawn per positive ->
`neg_samples_per_pos` (1), the sign of the exponent -> `favour_tails` (True: the source's +). Reading of
open details: the selection rule is the one the same source uses in DistWeightNeighbour / DistanceMatch;
the limits and the hinges are the source's DistWeightContrastiveLoss.
"""
from __future__ import annotations

import torch

from .base import DeepMetricLoss
from .pairs import euclidean_distances, masked_mean, pair_masks
from .sampling import gaussian_logits, make_generator, sample_without_replacement


class DistWeightContrastiveLoss(DeepMetricLoss):
    """Hinges d+ <= 0.7 and d- >= 1.2, negatives drawn by the Gaussian rule."""

    def __init__(self, pos_limit: float = 0.7, neg_limit: float = 1.2, neg_samples_per_pos: int = 1,
                 favour_tails: bool = True, seed: int | None = 0, generator: torch.Generator | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.pos_limit, self.neg_limit = float(pos_limit), float(neg_limit)
        self.neg_samples_per_pos, self.favour_tails = int(neg_samples_per_pos), bool(favour_tails)
        self.generator = generator if generator is not None else make_generator(seed)

    def loss_dict(self, embeddings, labels, indices_tuple):
        dist = euclidean_distances(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        num = self.neg_samples_per_pos * pos.sum(1)  # B
        drawn = sample_without_replacement(gaussian_logits(dist, neg, self.favour_tails), neg, num, self.generator)
        pos_loss = masked_mean((dist - self.pos_limit).clamp_min(0.0), pos)  # B
        neg_loss = masked_mean((self.neg_limit - dist).clamp_min(0.0), drawn)  # B
        return self.element_dict(pos_loss + neg_loss, pos.any(1) & neg.any(1))
