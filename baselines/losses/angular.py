"""Angular loss, triplet form (Wang et al. 2017; document 002, "Angular Loss").

    max(0, ||x_a - x_p||^2 - 4 tan^2(alpha) ||x_n - x_c||^2),   x_c = (x_a + x_p) / 2

on L2-normalised embeddings, for every triplet (all of the batch, or a miner's). pytorch-metric-learning's
AngularLoss implements the paper's OTHER form, the smooth N-pair version log(1 + sum_n exp(f_apn)) with
f_apn = 4 tan^2(alpha) (x_a + x_p)^T x_n - 2 (1 + tan^2(alpha)) x_a^T x_p; it does not equal the hinge
formula the document writes (tests/test_baseline_losses_pair.py shows the two differ), so the document's
version is written here. The squared distances come from one Gram matrix G = X X^T:
||x_n - x_c||^2 = G_nn - G_an - G_pn + (G_aa + 2 G_ap + G_pp) / 4.
Notation -> code: alpha -> ``alpha`` in degrees (40, pml's default; the paper reports 36-55).
Reduction: mean over the triplets with a non-zero loss.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import AvgNonZeroReducer
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


class AngularLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, alpha: float = 40.0, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance, p=2, power=1, normalize_embeddings=True)
        if not 0 < alpha < 90:
            raise ValueError(f"AngularLoss: alpha is an angle in degrees in (0, 90), got {alpha}")
        self.alpha = alpha
        self.sq_tan_alpha = math.tan(math.radians(alpha)) ** 2

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        a, p, n = lmu.convert_to_triplets(indices_tuple, labels, ref_labels, t_per_anchor="all")
        if len(a) == 0:
            return self.zero_losses()
        x = self.distance.normalize(embeddings)  # x: B x d
        gram = x @ x.t()  # gram: B x B
        sq_ap = gram[a, a] + gram[p, p] - 2 * gram[a, p]  # ||x_a - x_p||^2: T
        sq_nc = gram[n, n] - gram[a, n] - gram[p, n] + (gram[a, a] + 2 * gram[a, p] + gram[p, p]) / 4  # T
        losses_ = F.relu(sq_ap - 4 * self.sq_tan_alpha * sq_nc)  # T
        return {"loss": {"losses": losses_, "indices": (a, p, n), "reduction_type": "triplet"}}

    def get_default_reducer(self):
        return AvgNonZeroReducer()
