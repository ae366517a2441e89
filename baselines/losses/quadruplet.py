"""Quadruplet loss (Chen et al. 2017; document 002, "Quadruplet Loss").

    max(0, D(x, x+) - D(x, x1-) + alpha) + max(0, D(x, x+) - D(x2-, x1-) + beta)

The first term is the triplet hinge over triplets (x, x+, x1-). The second asks the positive pair to be
closer than any negative pair (x1-, x2-) of two different classes, both different from the anchor's class
(the paper's condition). Over a batch: loss = mean over triplets of the first term + mean over positive
pairs (x, x+) of the mean over their valid negative pairs of the second term.
The second term would be P x M (positive x negative pairs) if broadcast; instead, per anchor class, the M
negative-pair distances are sorted once and each positive pair finds with searchsorted how many of them lie
below D(x, x+) + beta: sum_v relu(t - v) = k t - (sum of the k smallest v). Memory: classes x M.
Notation -> code: alpha -> ``margin`` (0.2), beta -> ``neg_pair_margin`` (0.1; the paper keeps beta < alpha,
the second constraint being the weaker one; the document gives no values). D -> ``distance`` (a distance,
not a similarity: Euclidean on normalised embeddings by default). With a triplet miner, the first term uses
the mined triplets and the second their distinct (anchor, positive) pairs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


def sum_of_hinges_below(thresholds: torch.Tensor, groups: torch.Tensor, values: torch.Tensor,
                        valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each threshold t_q (Q) of group g_q (Q, int): sum over valid values v of row g (valid: G x M) of
    relu(t_q - v), and the number of valid values of that row. Differentiable in thresholds and values."""
    num_groups, m = valid.shape
    inf = torch.tensor(float("inf"), dtype=values.dtype, device=values.device)
    sorted_vals, order = torch.sort(torch.where(valid, values.unsqueeze(0), inf), dim=1)  # G x M
    finite = torch.where(torch.gather(valid, 1, order), sorted_vals, torch.zeros_like(sorted_vals))  # G x M
    csum = F.pad(torch.cumsum(finite, dim=1), (1, 0))  # G x (M + 1), csum[:, k] = sum of the k smallest
    with torch.no_grad():  # rank each threshold in its row: rows laid end to end on one float64 axis
        both = torch.cat([values.detach().flatten(), thresholds.detach().flatten()]).double()
        low, width = both.min(), both.max() - both.min() + 2.0  # row g occupies [g width, g width + width - 2]
        keys = torch.where(torch.isinf(sorted_vals.detach()), width - 1.0, sorted_vals.detach().double() - low)
        offsets = torch.arange(num_groups, device=values.device, dtype=torch.float64).unsqueeze(1) * width
        queries = thresholds.detach().double() - low + groups.double() * width  # Q
        rank = torch.searchsorted((keys + offsets).flatten().contiguous(), queries) - groups * m  # Q
    hinge_sum = rank.to(thresholds.dtype) * thresholds - csum[groups, rank]  # Q
    return hinge_sum, valid.sum(dim=1)[groups]


class QuadrupletLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, margin: float = 0.2, neg_pair_margin: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance)
        self.margin, self.neg_pair_margin = margin, neg_pair_margin

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        a, p, n = lmu.convert_to_triplets(indices_tuple, labels, labels, t_per_anchor="all")
        if len(a) == 0:
            return self.zero_losses()
        batch = len(labels)
        mat = self.distance(embeddings)  # mat: B x B
        triplet = F.relu(mat[a, p] - mat[a, n] + self.margin)  # T
        if indices_tuple is None:
            pa, pp, _, _ = lmu.get_all_pairs_indices(labels)  # P each
        else:
            key = torch.unique(a * batch + p)
            pa, pp = key // batch, key % batch
        k, l = torch.nonzero(torch.triu(labels.unsqueeze(1) != labels.unsqueeze(0), 1), as_tuple=True)  # M
        classes, group = torch.unique(labels[pa], return_inverse=True)  # G, P
        valid = (labels[k].unsqueeze(0) != classes.unsqueeze(1)) & (labels[l].unsqueeze(0) != classes.unsqueeze(1))
        hinge_sum, count = sum_of_hinges_below(mat[pa, pp] + self.neg_pair_margin, group, mat[k, l], valid)
        keep = count > 0  # positive pairs that have at least one valid negative pair
        quad = hinge_sum[keep] / count[keep]  # P'
        loss = {"triplet_loss": {"losses": triplet, "indices": (a, p, n), "reduction_type": "triplet"}}
        loss["quadruplet_loss"] = ({"losses": quad, "indices": (pa[keep], pp[keep]), "reduction_type": "pos_pair"}
                                   if len(quad) > 0 else self.zero_loss())
        return loss

    def _sub_loss_names(self):
        return ["triplet_loss", "quadruplet_loss"]
