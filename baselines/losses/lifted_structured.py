"""Lifted structured loss (Song et al. 2016; document 002, "Lifted Structured Loss").

    1/(2|P|) sum_{(i,j) in P} max(0, D_ij + max(max_{(i,k) in N} eps - D_ik, max_{(j,l) in N} eps - D_jl))^2

Each positive pair is charged with the hardest negative of either of its two members. The document writes
the hard max; the paper optimises its smooth upper bound, log(sum_k exp(eps - D_ik) + sum_l exp(eps - D_jl)),
which is what pytorch-metric-learning's LiftedStructureLoss computes. The two differ (tested), so the
document's hard form is the default here and ``smooth=True`` gives the paper's bound (tested equal to pml's).
Notation -> code: eps -> ``neg_margin`` (1.0, the paper's and pml's); D -> ``distance`` (Euclidean on
normalised embeddings). Pairs from labels (both orders; each unordered pair then weighs 1/(2|P|)) or from a
pair/triplet miner. Positive pairs whose members have no negative at all contribute nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


class LiftedStructuredLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, neg_margin: float = 1.0, smooth: bool = False, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance)
        self.neg_margin, self.smooth = neg_margin, smooth

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels)
        if len(a1) == 0 or len(a2) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings)  # mat: B x B
        neg_mask = torch.zeros_like(mat, dtype=torch.bool)
        neg_mask[a2, n] = True  # row i holds the negative pairs (i, k)
        remaining = (self.neg_margin - mat).masked_fill(~neg_mask, c_f.neg_inf(mat.dtype))  # eps - D_ik: B x B
        if self.smooth:
            per_row = torch.logsumexp(remaining, dim=1)  # B
            hardest = torch.logaddexp(per_row[a1], per_row[p])  # P
        else:
            per_row = remaining.amax(dim=1)  # B
            hardest = torch.maximum(per_row[a1], per_row[p])  # P
        has_negative = neg_mask.any(dim=1)
        keep = has_negative[a1] | has_negative[p]  # P
        losses_ = F.relu(mat[a1, p] + hardest).pow(2) / 2  # P (each unordered pair appears twice)
        losses_ = torch.where(keep, losses_, torch.zeros_like(losses_))
        return {"loss": {"losses": losses_, "indices": (a1, p), "reduction_type": "pos_pair"}}
