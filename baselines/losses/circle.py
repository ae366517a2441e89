"""Circle loss (Sun et al. 2020; document 002, "Circle Loss").

    log(1 + sum_{j in N_i} exp(-gamma a_n^j (D_ij + Delta_n)) sum_{k in P_i} exp(gamma a_p^k (D_ik + Delta_p)))

With D = -s (the document writes the negated similarity) these are the paper's exp(gamma a_n (s_n - Delta_n))
and exp(-gamma a_p (s_p - Delta_p)), with a_p = [1 + m - s_p]_+, a_n = [s_n + m]_+ (treated as constants),
Delta_p = 1 - m, Delta_n = m. pytorch-metric-learning's CircleLoss computes exactly this per anchor
(anchors with no positive or no negative give 0) on cosine similarity; verified against a per-anchor loop in
tests/test_baseline_losses_pair.py. Defaults m = 0.4, gamma = 80 (the paper's fine-grained retrieval values).
Reduction: mean over anchors with a non-zero loss.
"""
from __future__ import annotations

from pytorch_metric_learning import losses

from .base import CheckedInputMixin


class CircleLoss(CheckedInputMixin, losses.CircleLoss):
    """pml's CircleLoss with input checks."""

    def __init__(self, m: float = 0.4, gamma: float = 80.0, **kwargs):
        super().__init__(m=m, gamma=gamma, **kwargs)
