"""DistWeight: one positive drawn with probability exp(5 s), hard negatives above it, a linear hinge.

Source: DistWeightLoss of github bnulihaixia/Deep_metric (source document 003), on s = x x^T:

    p* ~ multinomial(exp(5 * s(i, p)))  over the positives of anchor i      (one draw per anchor)
    hard negatives  n with s(i, n) > s(i, p*) - 0.01
    loss_i = mean_{hard n} s(i, n) - s(i, p*) + 0.01,  or 0 when there is none (source: sum / n)

Notation -> code: 5 -> `pos_sample_scale`, 0.01 -> `margin`. The draw is seedable (`seed`, or an explicit
`generator`): sampling.py draws it for all anchors at once, with the law of the source's per-row call.
"""
from __future__ import annotations

import torch

from .base import DeepMetricLoss
from .pairs import inner_products, masked_mean, masked_sum, pair_masks
from .sampling import make_generator, sample_without_replacement


class DistWeightLoss(DeepMetricLoss):
    """Sampled positive vs the mean of the negatives more similar than it (minus 0.01)."""

    def __init__(self, pos_sample_scale: float = 5.0, margin: float = 0.01, seed: int | None = 0,
                 generator: torch.Generator | None = None, **kwargs):
        super().__init__(**kwargs)
        self.pos_sample_scale, self.margin = float(pos_sample_scale), float(margin)
        self.generator = generator if generator is not None else make_generator(seed)

    def loss_dict(self, embeddings, labels, indices_tuple):
        sim = inner_products(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        drawn = sample_without_replacement(self.pos_sample_scale * sim, pos, 1, self.generator)  # B x B, <=1/row
        pos_sim = masked_sum(sim, drawn)  # B: s(i, p*)
        hard = neg & (sim > pos_sim.detach().unsqueeze(1) - self.margin)  # B x B
        rows = masked_mean(sim, hard) - pos_sim + self.margin
        rows = torch.where(hard.any(1), rows, torch.zeros_like(rows))
        return self.element_dict(rows, pos.any(1) & neg.any(1))
