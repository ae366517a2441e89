"""A_triplet: Deep_metric's soft-plus Triplet with the dynamic factor a_lr on each anchor.

Source: A_triplet of github bnulihaixia/Deep_metric (source document 003): the Triplet of triplet.py
(log(1 + exp(beta (d+ - d-))) kept above 0.65) with each anchor's triplets multiplied by the detached
a_lr = 1 - pos_logit / (pos_logit + neg_logit) (dynamic_factor.py). alpha 40 as in AHardPair.
"""
from __future__ import annotations

import torch

from .dynamic_factor import dynamic_factor
from .triplet import DMTripletLoss


class ATripletLoss(DMTripletLoss):
    """DMTripletLoss with per-anchor weights a_lr. beta 20, mask_threshold 0.65, alpha 40."""

    def __init__(self, beta: float = 20.0, mask_threshold: float = 0.65, alpha: float = 40.0, **kwargs):
        super().__init__(beta=beta, mask_threshold=mask_threshold, **kwargs)
        self.alpha = float(alpha)

    def anchor_weights(self, dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return dynamic_factor(dist, pos, neg, self.alpha)
