"""Hierarchical triplet loss (Ge et al. 2018; document 002, "Hierarchical Triplet Loss").

    max(0, D(a, p) - D(a, n) + alpha_z),   alpha_z = beta + d_H(y_a, y_n) - S_{y_a}

A class tree built from the data sets a violate margin per (anchor class, negative class):
- class distance d(p, q) = mean squared distance between the samples of classes p and q, on L2-normalised
  features (so in [0, 4]); S_c = mean squared distance between two distinct samples of class c;
- d_0 = mean of S_c; the tree has L levels with merge thresholds d_l = d_0 + l (4 - d_0) / L, l = 0..L;
  classes are merged bottom-up by average linkage (scipy), and d_H(p, q) is the threshold of the first level
  whose threshold exceeds the height at which p and q join (the level of their lowest common ancestor);
- the triplet distance D is the squared Euclidean distance on normalised embeddings, the tree's own unit.
``fit_tree(features, labels)`` rebuilds the tree from the whole training set (the trainer calls it every
epoch, as the paper updates its tree during training); until it is called, each batch builds a tree from its
own (detached) embeddings. Notation -> code: beta -> ``beta`` (0.1), L -> ``num_levels`` (16), d_H ->
``merge_threshold`` (C x C buffer), S -> ``class_spread`` (C buffer). The paper's anchor-neighbour batch
sampling is not implemented: use the m-per-class sampler.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from scipy.cluster.hierarchy import cophenet, linkage
from scipy.spatial.distance import squareform

from .base import CheckedInputMixin


@torch.no_grad()
def class_tree_margins(features: torch.Tensor, labels: torch.Tensor, num_classes: int, num_levels: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tree statistics from labelled features (N x d, N). Returns (d_H: C x C, S: C); absent classes -> 0."""
    x = F.normalize(features.detach().float(), dim=1)  # x: N x d
    onehot = F.one_hot(labels, num_classes).float()  # onehot: N x C
    count = onehot.sum(0)  # C
    present = count > 0
    mean = (onehot.t() @ x) / count.clamp(min=1).unsqueeze(1)  # mean: C x d (unit rows -> E||x||^2 = 1)
    # mean squared distance between the samples of p and q (unit vectors): 2 - 2 mu_p . mu_q  -> C x C
    class_dist = (2.0 - 2.0 * mean @ mean.t()).clamp(min=0)
    # within class, over distinct pairs: n/(n-1) (2 - 2 ||mu||^2)
    spread = (2.0 - 2.0 * (mean * mean).sum(1)).clamp(min=0) * count / (count - 1).clamp(min=1)  # C
    d0 = spread[present].mean() if bool(present.any()) else spread.new_tensor(0.0)
    step = (4.0 - d0) / num_levels
    merge = torch.full((num_classes, num_classes), 4.0, device=features.device)
    idx = torch.nonzero(present).squeeze(1)
    if len(idx) >= 2:  # average-linkage tree over the classes present; cophenetic = height where p, q join
        sub = class_dist[idx][:, idx].cpu().double().numpy()
        np.fill_diagonal(sub, 0.0)
        height = squareform(cophenet(linkage(squareform(sub, checks=False), method="average")))
        height = torch.as_tensor(height, dtype=torch.float32, device=features.device)  # K x K
        level = torch.floor((height - d0) / step).add(1).clamp(min=0, max=num_levels)  # first l with d_l > h
        merge[idx.unsqueeze(1), idx.unsqueeze(0)] = d0 + level * step
    return merge, spread


class HierarchicalTripletLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, num_classes: int, beta: float = 0.1, num_levels: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.beta, self.num_levels = num_classes, beta, num_levels
        self.register_buffer("merge_threshold", torch.zeros(num_classes, num_classes))  # d_H: C x C
        self.register_buffer("class_spread", torch.zeros(num_classes))  # S: C
        self.register_buffer("tree_fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit_tree(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Rebuild the class tree from labelled features (N x d, N), e.g. the whole training set."""
        merge, spread = class_tree_margins(features, labels.to(features.device), self.num_classes,
                                           self.num_levels)
        self.merge_threshold.copy_(merge)
        self.class_spread.copy_(spread)
        self.tree_fitted.fill_(True)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        anchor, positive, negative = lmu.convert_to_triplets(indices_tuple, labels, ref_labels,
                                                             t_per_anchor="all")
        if len(anchor) == 0:
            return self.zero_losses()
        if bool(self.tree_fitted):
            merge, spread = self.merge_threshold, self.class_spread
        else:
            merge, spread = class_tree_margins(embeddings, labels, self.num_classes, self.num_levels)
        ya, yn = labels[anchor], ref_labels[negative]  # T each
        violate_margin = self.beta + merge[ya, yn] - spread[ya]  # alpha_z: T
        mat = self.distance(embeddings, ref_emb)  # mat: B x B
        ap, an = mat[anchor, positive], mat[anchor, negative]  # T each
        losses_ = F.relu(self.distance.margin(ap, an) + violate_margin)  # T
        return {"loss": {"losses": losses_, "indices": (anchor, positive, negative), "reduction_type": "triplet"}}

    def get_default_distance(self):
        return LpDistance(power=2)

    def get_default_reducer(self):
        return MeanReducer()
