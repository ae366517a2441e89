"""m-per-class batches and Magnet's cluster batches."""
from __future__ import annotations

import pytest
import torch

from baselines.samplers import MagnetBatchSampler, MPerClassBatchSampler, padded_groups, per_class_kmeans


def test_m_per_class_batches():
    labels = torch.arange(5).repeat_interleave(torch.tensor([6, 7, 8, 9, 10]))
    sampler = MPerClassBatchSampler(labels, m=3, batch_size=12, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(labels) // 12
    for b in batches:
        assert len(b) == 12 and len(set(b)) == 12  # no repeat inside a batch
        counts = torch.bincount(labels[b], minlength=5)
        assert sorted(counts[counts > 0].tolist()) == [3, 3, 3, 3]


def test_m_per_class_is_seeded_and_changes_with_epoch():
    labels = torch.arange(4).repeat_interleave(5)
    a = list(MPerClassBatchSampler(labels, m=2, batch_size=4, seed=1))
    b = list(MPerClassBatchSampler(labels, m=2, batch_size=4, seed=1))
    assert a == b
    s = MPerClassBatchSampler(labels, m=2, batch_size=4, seed=1)
    assert list(s) != list(s)  # the second pass is the next epoch


def test_m_per_class_errors():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match="smallest class.*class 1 has 2"):
        MPerClassBatchSampler(labels, m=3, batch_size=6)
    with pytest.raises(ValueError, match="multiple of m"):
        MPerClassBatchSampler(labels, m=2, batch_size=5)
    with pytest.raises(ValueError, match="classes per batch"):
        MPerClassBatchSampler(labels, m=1, batch_size=4)


def test_padded_groups():
    group = torch.tensor([2, 0, 2, 2, 0])
    table, sizes = padded_groups(group, 4)
    assert sizes.tolist() == [2, 0, 3, 0]
    assert sorted(table[0][table[0] >= 0].tolist()) == [1, 4]
    assert sorted(table[2].tolist()) == [0, 2, 3]
    assert (table[1] < 0).all()


def blobs(seed=0, classes=3, per_blob=10, blobs_per_class=2):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes * blobs_per_class, 4, generator=g) * 10
    x = centres.repeat_interleave(per_blob, 0) + 0.1 * torch.randn(len(centres) * per_blob, 4, generator=g)
    labels = (torch.arange(len(centres)) // blobs_per_class).repeat_interleave(per_blob)
    blob = torch.arange(len(centres)).repeat_interleave(per_blob)
    return x, labels, blob


def test_per_class_kmeans_finds_the_blobs_of_each_class():
    x, labels, blob = blobs()
    best = []
    for seed in range(3):  # k-means may need a restart; one of three finds the planted blobs
        assign, centres = per_class_kmeans(x, labels, 3, 2, 20, torch.Generator().manual_seed(seed))
        assert ((assign // 2) == labels).all()  # clusters never mix classes
        pure = all(len(set(blob[assign == c].tolist())) <= 1 for c in range(6))
        best.append(pure)
    assert any(best)


def test_magnet_batches_are_seed_plus_nearest_impostors():
    x, labels, _ = blobs(classes=4, blobs_per_class=2)
    sampler = MagnetBatchSampler(labels, clusters_per_class=2, clusters_per_batch=3, samples_per_cluster=4, seed=0)
    with pytest.raises(RuntimeError, match="refresh"):
        next(iter(sampler))
    sampler.refresh(x)
    cluster = sampler.cluster_of
    centres = torch.stack([x[cluster == c].mean(0) for c in range(8)])
    for b in sampler:
        assert len(b) == 12
        runs = torch.tensor(b).view(3, 4)
        run_cluster = cluster[runs]
        assert (run_cluster == run_cluster[:, :1]).all()  # each run of D is one cluster
        seed_c, others = int(run_cluster[0, 0]), run_cluster[1:, 0].tolist()
        seed_class = seed_c // 2
        assert all(o // 2 != seed_class for o in others)  # impostors are of other classes
        d = ((centres - centres[seed_c]) ** 2).sum(1)
        d[torch.arange(8) // 2 == seed_class] = float("inf")
        assert sorted(others) == sorted(torch.argsort(d)[:2].tolist())  # ... and the nearest ones


def test_magnet_sampler_samples_with_replacement_only_for_small_clusters():
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 1, 1])
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    sampler = MagnetBatchSampler(labels, clusters_per_class=1, clusters_per_batch=2, samples_per_cluster=3)
    sampler.refresh(x)
    for b in sampler:
        runs = torch.tensor(b).view(2, 3)
        for run in runs:
            if int(labels[run[0]]) == 1:
                assert len(set(run.tolist())) == 3
            else:
                assert set(run.tolist()) <= {0, 1}


def test_magnet_sampler_errors():
    with pytest.raises(ValueError, match="at least 2 classes"):
        MagnetBatchSampler(torch.zeros(5, dtype=torch.long))
    sampler = MagnetBatchSampler(torch.tensor([0, 0, 1, 1]), clusters_per_class=1, clusters_per_batch=2,
                                 samples_per_cluster=2)
    with pytest.raises(ValueError, match="embeddings"):
        sampler.refresh(torch.zeros(3, 2))
