"""Shared pieces of the Deep_metric per-sample reference loops: tiny unit-norm batches and row enumeration."""
import math

import torch


def unit_batch(n: int, seed: int = 0, dim: int = 4) -> torch.Tensor:
    """n x dim float64 unit rows from a seeded normal draw."""
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=gen, dtype=torch.float64), dim=1)


def rows(labels):
    """(i, positives of i, negatives of i) for every row that has both, as plain Python lists."""
    n = len(labels)
    for i in range(n):
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(n) if labels[j] != labels[i]]
        if pos and neg:
            yield i, pos, neg


def sim(x, i, j) -> float:
    return float((x[i] * x[j]).sum())


def dist(x, i, j) -> float:
    return math.sqrt(max(float(((x[i] - x[j]) ** 2).sum()), 1e-12))
