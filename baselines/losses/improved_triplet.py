"""Improved triplet loss (Cheng et al. 2016; document 002, "Improved Triplet Loss").

    max(0, D(x, x+) - D(x, x-) + alpha) + max(0, D(x, x+) - beta),   beta < alpha

The triplet hinge plus an absolute bound beta on the anchor-positive distance. pytorch-metric-learning has no
such class; written on its BaseMetricLossFunction so triplet miners compose (triplets from labels: all of
them). Notation -> code: alpha -> ``margin`` (0.2, as TripletLoss), beta -> ``pos_margin`` (0.1); the
document requires beta < alpha and gives no values. Works with similarities too (``distance.margin``).
Reduction: mean over the triplets with a non-zero loss (as pml's triplet loss).
"""
from __future__ import annotations

import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.reducers import AvgNonZeroReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


class ImprovedTripletLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, margin: float = 0.2, pos_margin: float = 0.1, **kwargs):
        if not pos_margin < margin:
            raise ValueError(f"ImprovedTripletLoss: the document requires beta (pos_margin={pos_margin}) < "
                             f"alpha (margin={margin})")
        super().__init__(**kwargs)
        self.margin, self.pos_margin = margin, pos_margin

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        anchor, positive, negative = lmu.convert_to_triplets(indices_tuple, labels, ref_labels,
                                                             t_per_anchor="all")
        if len(anchor) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings, ref_emb)  # mat: B x B
        ap, an = mat[anchor, positive], mat[anchor, negative]  # ap, an: T
        losses_ = (F.relu(self.distance.margin(ap, an) + self.margin)
                   + F.relu(self.distance.margin(ap, self.pos_margin)))  # T
        return {"loss": {"losses": losses_, "indices": (anchor, positive, negative), "reduction_type": "triplet"}}

    def get_default_reducer(self):
        return AvgNonZeroReducer()
