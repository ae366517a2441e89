"""Contrastive loss (Hadsell et al. 2006; document 002, "Contrastive Loss").

    I(y_i = y_j) D_ij + I(y_i != y_j) max(0, eps - D_ij)

pytorch-metric-learning's ContrastiveLoss computes exactly this with pos_margin = 0 (relu(D_ij - 0) = D_ij
for a distance) and neg_margin = eps; verified against a per-pair loop in tests/test_baseline_losses_pair.py.
Notation -> code: eps -> ``neg_margin``; D -> ``distance`` (default: Euclidean on L2-normalised embeddings).
Reduction (pml's default, which the document leaves open): mean of the non-zero positive-pair terms plus
mean of the non-zero negative-pair terms.
"""
from __future__ import annotations

from pytorch_metric_learning import losses

from .base import CheckedInputMixin


class ContrastiveLoss(CheckedInputMixin, losses.ContrastiveLoss):
    """pml's ContrastiveLoss with input checks; eps (``neg_margin``) = 1.0, pml's and Hadsell et al.'s value."""

    def __init__(self, neg_margin: float = 1.0, pos_margin: float = 0.0, **kwargs):
        super().__init__(pos_margin=pos_margin, neg_margin=neg_margin, **kwargs)
