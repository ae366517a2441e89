"""Clustering loss: deep metric learning via facility location (Song et al. 2017; document 002).

    F(X, S) = -sum_i min_{j in S} D(x_i, x_j)                       (facility location score of medoids S)
    F~(X, Y) = sum_k max_{j: y_j = k} F(X_{y = k}, {j})             (the oracle: best medoid of each class)
    loss = max(0, max_{S, |S| = |Y|} { F(X, S) + gamma Delta(g(S), Y) } - F~(X, Y))
    Delta(g(S), Y) = 1 - NMI(g(S), Y),  g(S): each point to its nearest medoid (the structured margin)

The inner max (loss-augmented inference) is NP-hard; as in the paper it is solved greedily: |Y| steps, each
adding the medoid that maximises F + gamma Delta, all candidates scored at once (a B x B tensor per step; the
loop is over the |Y| classes of the batch, not over samples). The paper's follow-up medoid-swap refinement is
not implemented. Gradients flow through the distances of the chosen and the oracle medoids; the choice and
Delta are constants. NMI uses the arithmetic mean of the entropies (scikit-learn's default, the paper's).
Notation -> code: gamma -> ``gamma`` (1.0; the document gives none); D -> ``distance`` (Euclidean on
normalised embeddings). Returns one number per batch (already reduced).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils import common_functions as c_f

from .base import CheckedInputMixin


def _entropy(p: torch.Tensor, dims) -> torch.Tensor:
    return -torch.xlogy(p, p).sum(dims)


def batched_nmi(assign: torch.Tensor, labels: torch.Tensor, num_clusters: int, num_classes: int) -> torch.Tensor:
    """NMI (arithmetic mean) of each row of assign (R x B, values < num_clusters) against labels (B)."""
    rows, batch = assign.shape
    flat = assign * num_classes + labels.unsqueeze(0)  # R x B
    joint = assign.new_zeros(rows, num_clusters * num_classes, dtype=torch.float64)
    joint = joint.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64)) / batch
    joint = joint.view(rows, num_clusters, num_classes)  # R x K x C
    h_a, h_y, h_joint = _entropy(joint.sum(2), 1), _entropy(joint.sum(1), 1), _entropy(joint, (1, 2))  # R each
    mutual = h_a + h_y - h_joint
    denom = (h_a + h_y) / 2
    return torch.where(denom > 0, mutual / denom.clamp(min=1e-300), torch.ones_like(denom))  # both trivial -> 1


@torch.no_grad()
def greedy_medoids(dist: torch.Tensor, labels: torch.Tensor, num_classes: int, gamma: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy loss-augmented inference. dist: B x B, labels: B in [0, num_classes).
    Returns (medoid indices: |Y|, NMI of the final assignment: scalar)."""
    batch = dist.shape[0]
    cur_min = torch.full((batch,), float("inf"), dtype=dist.dtype, device=dist.device)
    cur_assign = torch.zeros(batch, dtype=torch.long, device=dist.device)
    chosen = torch.zeros(batch, dtype=torch.bool, device=dist.device)
    medoids, nmi = [], dist.new_ones((), dtype=torch.float64)
    cand = dist.t()  # row j: distance of every point to candidate j: B x B
    for step in range(num_classes):
        closer = cand < cur_min.unsqueeze(0)  # B x B
        cand_min = torch.where(closer, cand, cur_min.unsqueeze(0))  # B x B
        cand_assign = torch.where(closer, torch.full_like(cur_assign, step).unsqueeze(0), cur_assign.unsqueeze(0))
        cand_nmi = batched_nmi(cand_assign, labels, step + 1, num_classes)  # B
        score = -cand_min.sum(1).double() + gamma * (1 - cand_nmi)  # B
        j = torch.argmax(score.masked_fill(chosen, float("-inf")))
        chosen[j] = True
        cur_min, cur_assign, nmi = cand_min[j], cand_assign[j], cand_nmi[j]
        medoids.append(j)
    return torch.stack(medoids), nmi


class ClusteringLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, gamma: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance)
        self.gamma = gamma

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        c_f.indices_tuple_not_supported(indices_tuple)
        classes, y = torch.unique(labels, return_inverse=True)  # |Y|, B
        num_classes = len(classes)
        dist = self.distance(embeddings)  # D: B x B
        same = y.unsqueeze(1) == y.unsqueeze(0)  # B x B
        with torch.no_grad():  # oracle medoid of each class: the member with the least summed distance
            cost = (dist * same).sum(0)  # cost of j as its own class's medoid: B
            own_class = y.unsqueeze(0) == torch.arange(num_classes, device=y.device).unsqueeze(1)  # |Y| x B
            oracle = cost.unsqueeze(0).masked_fill(~own_class, float("inf")).argmin(dim=1)  # |Y|
            medoids, nmi = greedy_medoids(dist.detach(), y, num_classes, self.gamma)
        oracle_score = -dist[torch.arange(len(y), device=y.device), oracle[y]].sum()  # F~(X, Y)
        augmented = -dist[:, medoids].amin(dim=1).sum() + self.gamma * (1 - nmi.to(dist.dtype))  # F + gamma Delta
        loss = F.relu(augmented - oracle_score)
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}
