"""Batch-hard triplet loss (Hermans et al. 2017; document 002, "Batch Hard Triplet Loss").

    max(0, max_k D(x, x+_k) - min_k D(x, x-_k) + eps)   for every anchor x of the batch

The hardest positive and the hardest negative of each anchor within the batch (batches of P classes x K
samples: baselines.samplers.MPerClassBatchSampler). Equals pml's TripletMarginLoss fed by its BatchHardMiner
(tested), written as one loss so that a config can name it. Anchors with no positive or no negative are
skipped. Notation -> code: eps -> ``margin`` (0.2); D -> ``distance`` (Euclidean on normalised embeddings;
similarities work through ``distance.smallest_dist``). Reduction: mean over anchors (the paper's).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


class BatchHardTripletLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, margin: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.margin = margin

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.indices_tuple_not_supported(indices_tuple)  # the loss does its own (batch-hard) mining
        mat = self.distance(embeddings, ref_emb)  # mat: B x B
        pos_mask, neg_mask = lmu.get_matches_and_diffs(labels, ref_labels)  # B x B each (diagonal not pos)
        pos_mask, neg_mask = pos_mask.bool(), neg_mask.bool()
        far, near = c_f.pos_inf(mat.dtype), c_f.neg_inf(mat.dtype)
        if self.distance.is_inverted:  # similarity: hardest positive = least similar, hardest negative = most
            hard_pos = mat.masked_fill(~pos_mask, far).amin(dim=1)  # B
            hard_neg = mat.masked_fill(~neg_mask, near).amax(dim=1)  # B
        else:
            hard_pos = mat.masked_fill(~pos_mask, near).amax(dim=1)  # B
            hard_neg = mat.masked_fill(~neg_mask, far).amin(dim=1)  # B
        valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)  # B
        if not bool(valid.any()):
            return self.zero_losses()
        anchors = torch.nonzero(valid).squeeze(1)
        losses_ = F.relu(self.distance.margin(hard_pos[valid], hard_neg[valid]) + self.margin)  # A
        return {"loss": {"losses": losses_, "indices": anchors, "reduction_type": "element"}}
