"""A small seedable k-means on one batch, in torch, for ClusterNCA (which re-clusters every batch).

Source: ClusterNCALoss of github bnulihaixia/Deep_metric (source document 003) calls scikit-learn's
KMeans(n_clusters, random_state=0) on the batch every step. This is the same algorithm without leaving
torch: k-means++ seeding (a loop over the K centres, not over samples) and a fixed number of Lloyd steps,
each one vectorised over all points. The project's evaluation k-means (isl.eval.clustering.kmeans)
L2-normalises its input and runs on numpy, which does not fit inside a loss; this one does neither.
"""
from __future__ import annotations

import torch

from .pairs import squared_distances
from .sampling import gumbel_keys, uniform_noise


def batch_kmeans(points: torch.Tensor, num_clusters: int, num_iters: int = 20,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of `points` (N x d, no gradient). Returns (assign N int64, centers K x d), K =
    min(num_clusters, N). Empty clusters keep their previous centre. Deterministic for a seeded generator.
    """
    if points.dim() != 2 or points.shape[0] < 1:
        raise ValueError(f"batch_kmeans needs an N x d tensor with N >= 1, got {tuple(points.shape)}")
    if num_clusters < 1 or num_iters < 0:
        raise ValueError(f"num_clusters={num_clusters} must be >= 1 and num_iters={num_iters} >= 0")
    points = points.detach()
    num_points = points.shape[0]
    k = min(num_clusters, num_points)
    # k-means++: each new centre is drawn with probability proportional to its squared distance to the
    # nearest centre chosen so far (uniformly when all those distances are 0, e.g. duplicate points).
    uniforms = uniform_noise((k, num_points), generator, points)  # K x N, one row per draw
    first = uniforms[0].argmax()
    chosen = [first]
    nearest = squared_distances(points, points[first].unsqueeze(0)).squeeze(1)  # N
    for j in range(1, k):  # loop over centres (K), not over samples
        weights = torch.where(nearest.sum() > 0, nearest, torch.ones_like(nearest))
        logits = torch.log(weights.clamp_min(1e-30)).masked_fill(weights <= 0, float("-inf"))
        pick = gumbel_keys(logits, uniforms[j]).argmax()
        chosen.append(pick)
        nearest = torch.minimum(nearest, squared_distances(points, points[pick].unsqueeze(0)).squeeze(1))
    centers = points[torch.stack(chosen)]  # K x d
    assign = squared_distances(points, centers).argmin(1)  # N
    for _ in range(num_iters):  # Lloyd steps, each vectorised over all points
        onehot = torch.nn.functional.one_hot(assign, k).to(points.dtype)  # N x K
        counts = onehot.sum(0)  # K
        means = (onehot.t() @ points) / counts.clamp_min(1.0).unsqueeze(1)
        centers = torch.where((counts > 0).unsqueeze(1), means, centers)
        assign = squared_distances(points, centers).argmin(1)
    return assign, centers
