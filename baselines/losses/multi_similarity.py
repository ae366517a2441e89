"""Multi-Similarity loss (Wang et al. 2019; document 002, "Multi-Similarity Loss").

    1/alpha log(1 + sum_{k in P_i} e^{alpha (D_ik + lambda)}) + 1/beta log(1 + sum_{k in N_i} e^{-beta (D_ik + lambda)})

The document writes D for the negated similarity, D = -S: the terms are then the paper's
e^{-alpha (S_ik - lambda)} and e^{beta (S_ik - lambda)}. pytorch-metric-learning's MultiSimilarityLoss
computes exactly this per anchor with cosine similarity (``base`` = lambda); verified against a per-anchor
loop in tests/test_baseline_losses_pair.py. Defaults: alpha = 2, beta = 50, lambda = 0.5 (the paper's).
The paper's pair mining is pml's MultiSimilarityMiner (baselines.miners, name "multi_similarity").
"""
from __future__ import annotations

from pytorch_metric_learning import losses

from .base import CheckedInputMixin


class MultiSimilarityLoss(CheckedInputMixin, losses.MultiSimilarityLoss):
    """pml's MultiSimilarityLoss with input checks; mean over anchors."""

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, **kwargs):
        super().__init__(alpha=alpha, beta=beta, base=base, **kwargs)
