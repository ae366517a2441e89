"""Binomial deviance loss (Yi et al. 2014; document 002, "Binomial Deviance Loss").

    I(y_i = y_j) log(1 + exp(alpha (D_ij - lambda))) + I(y_i != y_j) log(1 + exp(beta (lambda - D_ij)))

A softened contrastive loss: softplus instead of the hinge. pytorch-metric-learning has no such class, so it
is written here on pml's GenericPairLoss (pairs from labels or from a miner). For a similarity (pml's
inverted distances, e.g. the default cosine) the signs flip through ``distance.margin``: the positive term
becomes softplus(alpha (lambda - S)) and the negative one softplus(beta (S - lambda)), Yi et al.'s form.
Notation -> code: alpha -> ``alpha`` (2), beta -> ``beta`` (50), lambda -> ``margin`` (0.5): the values of the
Multi-Similarity paper's binomial-deviance baseline on cosine similarity (the document gives none).
Reduction: mean over positive pairs + mean over negative pairs.
"""
from __future__ import annotations

import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.reducers import MeanReducer

from .base import CheckedInputMixin


class BinomialDevianceLoss(CheckedInputMixin, losses.GenericPairLoss):
    def __init__(self, alpha: float = 2.0, beta: float = 50.0, margin: float = 0.5, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        self.alpha, self.beta, self.margin = alpha, beta, margin

    def _compute_loss(self, pos_pair_dist, neg_pair_dist, indices_tuple):
        a1, p, a2, n = indices_tuple
        pos_loss, neg_loss = 0, 0
        if len(pos_pair_dist) > 0:  # pos_pair_dist: P
            pos_loss = F.softplus(self.alpha * self.distance.margin(pos_pair_dist, self.margin))
        if len(neg_pair_dist) > 0:  # neg_pair_dist: N
            neg_loss = F.softplus(self.beta * self.distance.margin(self.margin, neg_pair_dist))
        return {
            "pos_loss": {"losses": pos_loss, "indices": (a1, p), "reduction_type": "pos_pair"},
            "neg_loss": {"losses": neg_loss, "indices": (a2, n), "reduction_type": "neg_pair"},
        }

    def get_default_distance(self):
        return CosineSimilarity()

    def get_default_reducer(self):
        return MeanReducer()

    def _sub_loss_names(self):
        return ["pos_loss", "neg_loss"]
