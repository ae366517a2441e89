"""Triplet loss (Schroff et al. 2015, FaceNet; document 002, "Triplet Loss").

    max(0, D(x, x+) - D(x, x-) + eps)   for every triplet (anchor, positive, negative)

pytorch-metric-learning's TripletMarginLoss computes exactly this over all triplets of the batch (or the
triplets a miner returns); verified against a per-triplet loop in tests/test_baseline_losses_pair.py.
Notation -> code: eps -> ``margin`` (0.2, FaceNet's value; the document gives none); D -> ``distance``
(default: Euclidean on L2-normalised embeddings). Reduction: mean over the triplets with a non-zero loss
(pml's AvgNonZeroReducer).
"""
from __future__ import annotations

from pytorch_metric_learning import losses

from .base import CheckedInputMixin


class TripletLoss(CheckedInputMixin, losses.TripletMarginLoss):
    """pml's TripletMarginLoss (all triplets, no swap, hinge) with input checks."""

    def __init__(self, margin: float = 0.2, **kwargs):
        super().__init__(margin=margin, **kwargs)
