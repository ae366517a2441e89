"""Histogram loss (Ustinova & Lempitsky 2016; document 001, and document 002 "Histogram Loss").

    s_ij = cos(f_i, f_j);  nodes t_r = -1 + r Delta, r = 0..R, Delta = 2 / R (R bins over [-1, 1])
    delta_ijr = (s_ij - t_{r-1}) / Delta on [t_{r-1}, t_r],  (t_{r+1} - s_ij) / Delta on [t_r, t_{r+1}],  0 else
    h+_r = 1/|S+| sum_{(i,j) in P} delta_ijr,  h-_r likewise over negative pairs
    loss = sum_r h-_r sum_{q <= r} h+_q   (the probability that a random negative pair is more similar than
                                           a random positive pair)

Each similarity is split linearly between its two neighbouring nodes (scatter_add), so the loss is
differentiable in s. Pairs: every unordered pair i < j of the batch, or a miner's pairs.
pytorch-metric-learning's HistogramLoss computes the same formula (tested equal on ordinary batches) but
is not used: a similarity of exactly 1 (duplicate embeddings, a degenerate batch the tests require) indexes
node R + 1 and raises, and it dedupes pairs through Python lists (.tolist()) on every call.
Notation -> code: R -> ``num_bins`` (100, Delta = 0.02, pml's default; the paper tried Delta in 0.01-0.04).
Batches with no positive or no negative pair give 0.
"""
from __future__ import annotations

import torch
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


def soft_histogram(sims: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Linear-interpolation histogram of similarities (K) on R + 1 nodes over [-1, 1]; sums to 1."""
    delta = 2.0 / num_bins
    pos = (sims.clamp(-1.0, 1.0) + 1.0) / delta  # position in units of Delta: K
    lower = pos.detach().floor().clamp(max=num_bins - 1).long()  # node r with t_r <= s < t_{r+1}: K
    frac = pos - lower.to(pos.dtype)  # (s - t_r) / Delta in [0, 1]: K
    hist = sims.new_zeros(num_bins + 1)
    hist = hist.scatter_add(0, lower, 1.0 - frac).scatter_add(0, lower + 1, frac)  # R + 1
    return hist / max(len(sims), 1)


class HistogramLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, num_bins: int = 100, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, CosineSimilarity)
        if num_bins < 1:
            raise ValueError(f"HistogramLoss: num_bins must be >= 1, got {num_bins}")
        self.num_bins = num_bins

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        if indices_tuple is None:  # every unordered pair once
            same = labels.unsqueeze(1) == labels.unsqueeze(0)  # B x B
            upper = torch.ones_like(same).triu(1)
            a1, p = torch.nonzero(same & upper, as_tuple=True)
            a2, n = torch.nonzero(~same & upper, as_tuple=True)
        else:
            a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels)
        if len(a1) == 0 or len(a2) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings)  # cosine: B x B
        hist_pos = soft_histogram(mat[a1, p], self.num_bins)  # R + 1
        hist_neg = soft_histogram(mat[a2, n], self.num_bins)  # R + 1
        loss = torch.sum(hist_neg * torch.cumsum(hist_pos, dim=0))
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}

    def get_default_distance(self):
        return CosineSimilarity()
