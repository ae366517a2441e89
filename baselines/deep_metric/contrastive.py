"""Contrastive (Deep_metric's): pull every positive's similarity to 1, push negatives below a margin.

Source: ContrastiveLoss of github bnulihaixia/Deep_metric (source document 003: "take the samples within
the same class as positive examples"), on the similarity matrix s = x x^T:

    loss_i = sum_p (1 - s(i, p)) + sum_{n: s(i, n) > margin} s(i, n),     loss = mean over anchors

Notation -> code: margin -> `margin` (0.5, the source's default). The source drops the anchor itself by
keeping positives with s < 1, which also drops exact duplicates; here the anchor is dropped by index.
"""
from __future__ import annotations

from .base import DeepMetricLoss
from .pairs import inner_products, masked_sum, pair_masks


class DMContrastiveLoss(DeepMetricLoss):
    """Sum of (1 - s) over positives plus s over negatives above the margin, per anchor. margin 0.5."""

    def __init__(self, margin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)

    def loss_dict(self, embeddings, labels, indices_tuple):
        sim = inner_products(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        losses = masked_sum(1.0 - sim, pos) + masked_sum(sim, neg & (sim > self.margin))  # B
        return self.element_dict(losses, pos.any(1) & neg.any(1))
