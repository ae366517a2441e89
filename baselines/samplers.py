"""Batch samplers for supervised metric learning: m-per-class batches and Magnet's cluster batches.

MPerClassBatchSampler: every batch holds P = batch_size / m classes x m samples each (without replacement in
a batch), as batch-hard and most pair losses expect. pytorch-metric-learning's MPerClassSampler does the same
but draws from numpy's global RNG and silently samples WITH replacement when m exceeds a class's size; this
one takes a seed, and refuses m larger than the smallest class.

MagnetBatchSampler (Rippel et al. 2016, document 000): the training set of each class is split into K
clusters by k-means on the current embeddings; a batch is M clusters x D samples: a seed cluster drawn
uniformly and its M - 1 nearest impostor clusters (nearest centres of OTHER classes), D samples from each
(with replacement only when a cluster has fewer than D members). ``refresh(embeddings)`` re-runs the
k-means; the trainer calls it every ``refresh_every`` epochs. Batches are laid out cluster by cluster, the
layout MagnetLoss(samples_per_cluster=D) expects. The k-means is one vectorised computation for all classes
at once (distances to the own class's K centres only). The paper draws the seed cluster in proportion to
its recent loss; here it is uniform.
Notation -> code: K -> ``clusters_per_class``, M -> ``clusters_per_batch``, D -> ``samples_per_cluster``.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from isl.neighbors import topk_inner_product


def padded_groups(group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Members of each group as a padded table. group: N ints in [0, G).
    Returns (table: G x max_size, -1 where empty; sizes: G)."""
    sizes = torch.bincount(group, minlength=num_groups)  # G
    order = torch.argsort(group, stable=True)  # indices grouped by group: N
    starts = torch.cumsum(sizes, 0) - sizes  # G
    rank = torch.arange(len(group)) - starts[group[order]]  # position within its group: N
    table = torch.full((num_groups, int(sizes.max()) if len(group) else 0), -1, dtype=torch.long)
    table[group[order], rank] = order
    return table, sizes


def draw_from_groups(table: torch.Tensor, sizes: torch.Tensor, rows: torch.Tensor, count: int,
                     generator: torch.Generator) -> torch.Tensor:
    """`count` members of each group in rows (R), without replacement where the group is large enough.
    Returns R x count dataset indices."""
    if table.shape[1] < count:  # every group is smaller than count: widen the table so argsort has count columns
        table = torch.nn.functional.pad(table, (0, count - table.shape[1]), value=-1)
    keys = torch.rand(len(rows), table.shape[1], generator=generator)  # R x S
    keys[table[rows] < 0] = 2.0  # padding sorts last
    without = torch.argsort(keys, dim=1)[:, :count]  # R x count (valid where size >= count)
    with_repl = (torch.rand(len(rows), count, generator=generator) * sizes[rows].unsqueeze(1)).long()
    position = torch.where((sizes[rows] >= count).unsqueeze(1), without, with_repl)  # R x count
    return torch.gather(table[rows], 1, position)


class MPerClassBatchSampler(Sampler[list[int]]):
    """Batches of (batch_size / m) classes x m samples. Pass as DataLoader(batch_sampler=...)."""

    def __init__(self, labels, m: int, batch_size: int, num_batches: int | None = None, seed: int = 0):
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        self.classes, self.group = torch.unique(labels, return_inverse=True)
        self.table, self.sizes = padded_groups(self.group, len(self.classes))
        smallest, num_classes = int(self.sizes.min()), len(self.classes)
        fits = [d for d in range(1, batch_size + 1)
                if batch_size % d == 0 and d <= smallest and batch_size // d <= num_classes]
        hint = f"; m values that fit batch_size {batch_size}: {fits}" if fits else \
            f"; no m fits batch_size {batch_size} (need batch_size <= {num_classes} classes x {smallest})"
        if m < 1 or batch_size % m != 0:
            raise ValueError(f"m-per-class: batch_size ({batch_size}) must be a multiple of m ({m}){hint}")
        if m > smallest:
            cls = int(self.classes[int(self.sizes.argmin())])
            raise ValueError(f"m-per-class: m={m} is larger than the smallest class (class {cls} has {smallest} "
                             f"samples){hint}")
        self.m, self.batch_size = m, batch_size
        self.classes_per_batch = batch_size // m
        if self.classes_per_batch > num_classes:
            raise ValueError(f"m-per-class: batch_size / m = {self.classes_per_batch} classes per batch, but the "
                             f"data has {num_classes}{hint}")
        self.num_batches = num_batches if num_batches is not None else max(1, len(labels) // batch_size)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        for _ in range(self.num_batches):
            chosen = torch.randperm(len(self.classes), generator=generator)[: self.classes_per_batch]  # P
            yield draw_from_groups(self.table, self.sizes, chosen, self.m, generator).flatten().tolist()


@torch.no_grad()
def per_class_kmeans(x: torch.Tensor, group: torch.Tensor, num_groups: int, k: int, iters: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means with k centres per group, all groups at once. x: N x d, group: N.
    Returns (cluster id of each point in [0, G k): N, centres: G k x d)."""
    table, sizes = padded_groups(group, num_groups)
    seeds = draw_from_groups(table, sizes, torch.arange(num_groups), k, generator)  # G x k (repeats if < k)
    centres = x[seeds.flatten()].clone()  # G k x d
    own = torch.arange(num_groups * k) // k  # group of each centre: G k
    allowed = group.unsqueeze(1) == own.unsqueeze(0)  # N x G k
    assign = torch.zeros(len(x), dtype=torch.long)
    for _ in range(iters):
        dist = torch.cdist(x, centres).masked_fill(~allowed, float("inf"))  # N x G k
        assign = dist.argmin(dim=1)  # N
        count = torch.bincount(assign, minlength=len(centres)).unsqueeze(1)  # G k x 1
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        centres = torch.where(count > 0, sums / count.clamp(min=1), centres)  # empty clusters keep their centre
    return assign, centres


class MagnetBatchSampler(Sampler[list[int]]):
    """Batches of M clusters x D samples: a seed cluster and its M - 1 nearest impostor clusters."""

    def __init__(self, labels, clusters_per_class: int = 4, clusters_per_batch: int = 8,
                 samples_per_cluster: int = 8, num_batches: int | None = None, kmeans_iters: int = 20,
                 seed: int = 0):
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        self.classes, self.group = torch.unique(labels, return_inverse=True)
        if len(self.classes) < 2:
            raise ValueError("Magnet batches need impostor clusters: the data must have at least 2 classes")
        if clusters_per_batch < 2 or samples_per_cluster < 1 or clusters_per_class < 1:
            raise ValueError("Magnet sampler: need clusters_per_batch >= 2, samples_per_cluster >= 1 and "
                             "clusters_per_class >= 1")
        self.k, self.m, self.d = clusters_per_class, clusters_per_batch, samples_per_cluster
        self.kmeans_iters, self.seed, self.refreshes, self.epoch = kmeans_iters, seed, 0, 0
        self.num_batches = num_batches if num_batches is not None else max(1, len(labels) // (self.m * self.d))
        self.cluster_of: torch.Tensor | None = None  # N

    @property
    def batch_size(self) -> int:
        return self.m * self.d

    def refresh(self, embeddings: torch.Tensor) -> None:
        """Re-cluster each class (k-means on embeddings: N x d, in dataset order) and rebuild the
        impostor-neighbour table."""
        if embeddings.shape[0] != len(self.group):
            raise ValueError(f"Magnet refresh: got {embeddings.shape[0]} embeddings for {len(self.group)} samples")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.refreshes)
        self.refreshes += 1
        x = embeddings.detach().float().cpu()
        num_groups = len(self.classes)
        self.cluster_of, centres = per_class_kmeans(x, self.group, num_groups, self.k, self.kmeans_iters, generator)
        self.table, self.sizes = padded_groups(self.cluster_of, num_groups * self.k)
        cluster_class = torch.arange(num_groups * self.k) // self.k  # C K
        # nearest centres by Euclidean distance, as one inner-product search: [c, 1] . [2 c', -|c'|^2]
        queries = torch.cat([centres, torch.ones(len(centres), 1)], dim=1)
        bank = torch.cat([2 * centres, -(centres * centres).sum(1, keepdim=True)], dim=1)
        k = min(len(centres), self.m - 1 + self.k)  # at most K of them share the seed's class
        _, near = topk_inner_product(queries, bank, k, backend="torch")  # C K x k, nearest first
        impostor = (cluster_class[near] != cluster_class.unsqueeze(1)) & (self.sizes[near] > 0)  # C K x k
        rank = torch.cumsum(impostor.long(), dim=1)  # 1-based rank among impostors
        keep = impostor & (rank < self.m)  # the first M - 1 impostors
        order = torch.argsort((~keep).long(), dim=1, stable=True)[:, : self.m - 1]
        self.impostors = torch.gather(near, 1, order)  # C K x (M - 1)
        self.impostor_ok = torch.gather(keep, 1, order)  # C K x (M - 1), False where too few impostors

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        if self.cluster_of is None:
            raise RuntimeError("MagnetBatchSampler: call refresh(embeddings) before iterating (the clusters come "
                               "from k-means on the current embeddings)")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * self.epoch + 1)
        self.epoch += 1
        nonempty = torch.nonzero(self.sizes > 0).squeeze(1)
        for _ in range(self.num_batches):
            seed_cluster = nonempty[torch.randint(len(nonempty), (1,), generator=generator)]  # 1
            clusters = torch.cat([seed_cluster, self.impostors[seed_cluster[0]][self.impostor_ok[seed_cluster[0]]]])
            yield draw_from_groups(self.table, self.sizes, clusters, self.d, generator).flatten().tolist()
