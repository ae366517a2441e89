"""A_BatchAll: BatchAll with the dynamic factor a_lr on each anchor's triplets.

Source: A_BatchAll of github bnulihaixia/Deep_metric (source document 003): `loss_ = a_lr * sum(valid
triplets)` per anchor, the sum over anchors divided by the number of valid triplets, with
a_lr = 1 - pos_logit / (pos_logit + neg_logit) (dynamic_factor.py; alpha -> `alpha`, margin -> `margin`).
The document does not give alpha; 40 is the A_ family's default in the source (AHardPair(alpha=40)).
"""
from __future__ import annotations

import torch

from .batch_all import BatchAllLoss
from .dynamic_factor import dynamic_factor


class ABatchAllLoss(BatchAllLoss):
    """BatchAll whose anchors are weighted by the detached a_lr. margin 0.02, alpha 40."""

    def __init__(self, margin: float = 0.02, alpha: float = 40.0, **kwargs):
        super().__init__(margin=margin, **kwargs)
        self.alpha = float(alpha)

    def anchor_weights(self, dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return dynamic_factor(dist, pos, neg, self.alpha)
