"""Ranked list loss (Wang et al. 2019; document 002, "Ranked List Loss").

    L_i = 1/|P*_i| sum_{j in P*_i} max(0, D_ij - (alpha - m))
        + sum_{j in N*_i} w_ij / (sum_{j in N*_i} w_ij) max(0, alpha - D_ij),   w_ij = exp(T_n (alpha - D_ij))

P*_i: the non-trivial positives of anchor i (D_ij > alpha - m; the document's "N_c - 1 positives whose
distance exceeds alpha - m"); N*_i: the non-trivial negatives (D_ij < alpha). An empty set gives 0. The
normalised weights are a masked softmax of T_n (alpha - D_ij) (numerically safe at large T_n).
pytorch-metric-learning's RankedListLoss weighs the two parts (1 - lambda) and lambda (imbalance = 0.5, i.e.
half the document's sum) and adds 1e-5 per column to both normalisers, so it is not the document's formula
(tested: 2 x pml agrees only to ~1e-3); the document's version is written here.
Notation -> code: alpha -> ``alpha`` (1.2), m -> ``margin`` (0.4), T_n -> ``neg_temperature`` (10): the paper's
values for L2-normalised embeddings (the document gives none); D -> ``distance`` (Euclidean on normalised
embeddings). Reduction: mean over anchors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


class RankedListLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, alpha: float = 1.2, margin: float = 0.4, neg_temperature: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance)
        self.alpha, self.margin, self.neg_temperature = alpha, margin, neg_temperature

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        c_f.indices_tuple_not_supported(indices_tuple)  # the loss mines its own non-trivial pairs
        mat = self.distance(embeddings)  # mat: B x B
        pos_mask, neg_mask = lmu.get_matches_and_diffs(labels)  # B x B (diagonal excluded from positives)
        pos_hinge = F.relu(mat - (self.alpha - self.margin))  # B x B
        pos_set = pos_mask.bool() & (pos_hinge > 0)  # P*
        pos_loss = (pos_hinge * pos_set).sum(1) / pos_set.sum(1).clamp(min=1)  # B
        neg_hinge = F.relu(self.alpha - mat)  # B x B
        neg_set = neg_mask.bool() & (neg_hinge > 0)  # N*
        logits = (self.neg_temperature * neg_hinge).masked_fill(~neg_set, c_f.neg_inf(mat.dtype))  # B x B
        weights = torch.softmax(logits, dim=1) * neg_set  # rows without N* -> all 0
        neg_loss = (weights * neg_hinge).sum(1)  # B
        return {"loss": {"losses": pos_loss + neg_loss, "indices": c_f.torch_arange_from_size(mat),
                         "reduction_type": "element"}}
