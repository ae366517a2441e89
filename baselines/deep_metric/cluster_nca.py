"""ClusterNCA: NCA over the centres of k-means sub-clusters of each class, re-clustered every batch.

Source: ClusterNCALoss of github bnulihaixia/Deep_metric (source document 003). The labels of the
neighbourhood come from k-means, not from the classes alone:
1. cluster [x_i, beta * onehot(y_i)] into `n_clusters` clusters (beta keeps clusters mostly within a class;
   the source runs scikit-learn's KMeans(random_state=0), here batch_kmeans.py with `seed`);
2. the groups are the non-empty (class, cluster) pairs; group centres mu_g are member means (with gradient);
3. D(i, g) = ||x_i - mu_g||^2, multiplied by (s / (s - 1))^2 for i's own group of size s > 1, which makes it
   the squared distance to the mean of the other members; entries with D <= 1e-3 (i's own singleton) drop;
4. loss_i = -log( sum_{g of class y_i} exp(-alpha D(i, g)) / sum_g exp(-alpha D(i, g)) ), mean over samples.
Notation -> code: alpha 16, n_clusters 32, beta 0.1 (the source's defaults), 1e-3 -> `min_dist`.
A sample with no same-class group or no other-class group left contributes nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DeepMetricLoss
from .batch_kmeans import batch_kmeans
from .pairs import class_centers, masked_logsumexp, squared_distances
from .sampling import make_generator


class ClusterNCALoss(DeepMetricLoss):
    """NCA against (class, k-means cluster) group centres. alpha 16, n_clusters 32, beta 0.1."""

    def __init__(self, alpha: float = 16.0, n_clusters: int = 32, beta: float = 0.1, min_dist: float = 1e-3,
                 kmeans_iters: int = 20, seed: int | None = 0, generator: torch.Generator | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        self.alpha, self.beta, self.min_dist = float(alpha), float(beta), float(min_dist)
        self.n_clusters, self.kmeans_iters = int(n_clusters), int(kmeans_iters)
        self.generator = generator if generator is not None else make_generator(seed)

    def groups(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(group of each sample B in [0, G), class index of each group G) from k-means on the batch."""
        classes = torch.unique(labels, return_inverse=True)[1]  # B in [0, C)
        num_classes = int(classes.max()) + 1
        points = torch.cat([embeddings.detach(), self.beta * F.one_hot(classes, num_classes).to(embeddings.dtype)], 1)
        assign, _ = batch_kmeans(points, self.n_clusters, self.kmeans_iters, self.generator)  # B
        group = torch.unique(classes * self.n_clusters + assign, return_inverse=True)[1]  # B in [0, G)
        group_class = torch.zeros(int(group.max()) + 1, dtype=torch.long, device=labels.device)
        return group, group_class.scatter(0, group, classes)

    def loss_dict(self, embeddings, labels, indices_tuple):
        self.refuse_indices_tuple(indices_tuple)
        group, group_class = self.groups(embeddings, labels)
        own = F.one_hot(group, group_class.shape[0]).bool()  # B x G
        sizes = own.sum(0).to(embeddings.dtype)  # G
        centers = class_centers(embeddings, own)  # G x d
        loo = (sizes / (sizes - 1).clamp_min(1.0)).pow(2)  # G: (s / (s-1))^2, 1 for singletons
        dist = squared_distances(embeddings, centers) * torch.where(own, loo, torch.ones_like(loo))  # B x G
        present = dist.detach() > self.min_dist
        same = group_class.unsqueeze(0) == group_class[group].unsqueeze(1)  # B x G
        logits = -self.alpha * dist
        lse_pos, has_pos = masked_logsumexp(logits, present & same)
        lse_all, _ = masked_logsumexp(logits, present)
        return self.element_dict(lse_all - lse_pos, has_pos & (present & ~same).any(1))
