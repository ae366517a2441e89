"""Soft nearest neighbour loss (Frosst et al. 2019; document 002, "Soft Nearest Neighbor Loss").

    -1/N sum_i log( sum_{j != i, y_j = y_i} exp(-f(x_i, x_j) / tau) / sum_{k != i} exp(-f(x_i, x_k) / tau) )

computed as logsumexp over the positives minus logsumexp over all others, so no term underflows. Anchors
with no positive in the batch (log 0) are left out of the mean; a batch without positives gives 0.
pytorch-metric-learning has no class of this name; its NCALoss (softmax_scale = 1/tau, squared Euclidean) is
the same formula on ordinary batches (tested) but takes log(softmax) and silently drops every anchor whose
positive probability underflows to 0 -- the worst-entangled samples, exactly the ones the loss measures.
Notation -> code: f -> ``distance`` (squared Euclidean on normalised embeddings, as in the paper);
tau -> ``temperature`` (1.0, the paper's starting value; the document gives none).
"""
from __future__ import annotations

import torch
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


class SoftNearestNeighborLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"SoftNearestNeighborLoss: temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        c_f.indices_tuple_not_supported(indices_tuple)
        mat = self.distance(embeddings)  # mat: B x B
        logits = mat / self.temperature if self.distance.is_inverted else -mat / self.temperature  # B x B
        pos_mask, _ = lmu.get_matches_and_diffs(labels)  # B x B, diagonal excluded
        pos_mask = pos_mask.bool()
        others = ~torch.eye(len(mat), dtype=torch.bool, device=mat.device)
        neg_inf = c_f.neg_inf(mat.dtype)
        log_num = torch.logsumexp(logits.masked_fill(~pos_mask, neg_inf), dim=1)  # B
        log_den = torch.logsumexp(logits.masked_fill(~others, neg_inf), dim=1)  # B
        has_pos = pos_mask.any(dim=1)
        if not bool(has_pos.any()):
            return self.zero_losses()
        return {"loss": {"losses": (log_den - log_num)[has_pos], "indices": torch.nonzero(has_pos).squeeze(1),
                         "reduction_type": "element"}}

    def get_default_distance(self):
        return LpDistance(power=2)
