"""The 5 proxy-based losses of document 002 (Magnet from document 000) against slow per-sample loops over the
formula, and the pytorch-metric-learning (pml) verdicts for the proxy classes (see
test_baseline_losses_pair.py for the full record)."""
from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml
from sklearn.metrics import normalized_mutual_info_score

from baselines import losses as L

SEEDS = [0, 1, 2]


def batch(seed: int, n_classes: int = 3, per_class: int = 4, dim: int = 3, shuffle: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_classes * per_class, dim, generator=g, dtype=torch.float64)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    if shuffle:
        perm = torch.randperm(len(y), generator=g)
        x, y = x[perm], y[perm]
    return x, y


def unit_rows(x):
    return [[v / math.sqrt(sum(t * t for t in row)) for v in row] for row in x.tolist()]


def sqdist(u, v):
    return sum((a - b) ** 2 for a, b in zip(u, v))


def lse(v):
    m = max(v)
    return m + math.log(sum(math.exp(t - m) for t in v))


def mean(v):
    return sum(v) / len(v) if v else 0.0


def with_proxies(loss, proxies):
    with torch.no_grad():
        loss.proxies.copy_(proxies)
    return loss


# ------------------------------------------------------------------------------------------------- Magnet
def ref_magnet(x, y, d=None, alpha=1.0, hinge=True, square_variance=False):
    """The document's formula, by hand; square_variance=True reproduces the document's CODE (2 sigma^4)."""
    f, y = x.tolist(), y.tolist()
    n = len(y)
    if d is None:
        classes = sorted(set(y))
        cluster = [classes.index(c) for c in y]
        cluster_class = classes
    else:
        cluster = [i // d for i in range(n)]
        cluster_class = [y[m * d] for m in range(n // d)]
    means = []
    for m in range(len(cluster_class)):
        members = [f[i] for i in range(n) if cluster[i] == m]
        means.append([sum(col) / len(members) for col in zip(*members)])
    variance = sum(sqdist(f[i], means[cluster[i]]) for i in range(n)) / (n - 1)
    norm = 2 * variance ** 2 if square_variance else 2 * variance
    terms = []
    for i in range(n):
        impostors = [-sqdist(f[i], means[m]) / norm for m in range(len(cluster_class)) if cluster_class[m] != y[i]]
        if not impostors:
            continue
        value = -((-sqdist(f[i], means[cluster[i]]) / norm - alpha) - lse(impostors))
        terms.append(max(0.0, value) if hinge else value)
    return mean(terms)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("hinge", [True, False])
def test_magnet_classes_as_clusters_matches_loop(seed, hinge):
    x, y = batch(seed)
    got = L.MagnetLoss(hinge=hinge)(x, y).item()
    assert got == pytest.approx(ref_magnet(x, y, hinge=hinge), rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_magnet_contiguous_clusters_matches_loop(seed):
    # M = 4 clusters x D = 3 samples; two clusters per class (classes 0, 1)
    x, _ = batch(seed, n_classes=4, per_class=3, shuffle=False)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    for hinge in (True, False):
        got = L.MagnetLoss(samples_per_cluster=3, hinge=hinge)(x, y).item()
        assert got == pytest.approx(ref_magnet(x, y, d=3, hinge=hinge), rel=1e-9)


def test_magnet_follows_the_formula_not_the_documents_squared_variance():
    x, y = batch(0)
    x = x * 0.3  # a variance far from 1, so sigma^2 and sigma^4 differ
    ours = L.MagnetLoss(hinge=False)(x, y).item()
    assert ours == pytest.approx(ref_magnet(x, y, hinge=False), rel=1e-9)
    assert ours != pytest.approx(ref_magnet(x, y, hinge=False, square_variance=True), rel=1e-3)


def test_magnet_rejects_batches_not_ordered_by_cluster():
    x, _ = batch(0, n_classes=2, per_class=3, shuffle=False)
    with pytest.raises(ValueError, match="one cluster of one class"):
        L.MagnetLoss(samples_per_cluster=3)(x, torch.tensor([0, 1, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="M clusters x D"):
        L.MagnetLoss(samples_per_cluster=4)(x, torch.tensor([0, 0, 0, 1, 1, 1]))


# ---------------------------------------------------------------------------------------------- Clustering
def ref_clustering(x, y, gamma=1.0):
    """Facility-location loss with the same greedy loss-augmented inference, by hand (sklearn's NMI)."""
    f, y = unit_rows(x), y.tolist()
    n = len(y)
    d = [[math.sqrt(sqdist(f[i], f[j])) for j in range(n)] for i in range(n)]
    classes = sorted(set(y))
    oracle = 0.0
    for c in classes:
        members = [i for i in range(n) if y[i] == c]
        oracle -= min(sum(d[i][j] for i in members) for j in members)
    chosen = []
    for _ in classes:
        best, best_j = -math.inf, None
        for j in range(n):
            if j in chosen:
                continue
            medoids = chosen + [j]
            score = -sum(min(d[i][m] for m in medoids) for i in range(n))
            assign = [min(range(len(medoids)), key=lambda k: (d[i][medoids[k]], k)) for i in range(n)]
            score += gamma * (1 - normalized_mutual_info_score(y, assign))
            if score > best:
                best, best_j = score, j
        chosen.append(best_j)
    assign = [min(range(len(chosen)), key=lambda k: (d[i][chosen[k]], k)) for i in range(n)]
    augmented = -sum(min(d[i][m] for m in chosen) for i in range(n)) + gamma * (
        1 - normalized_mutual_info_score(y, assign))
    return max(0.0, augmented - oracle)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_clustering_matches_loop(seed, gamma):
    x, y = batch(seed)
    got = L.ClusteringLoss(gamma=gamma)(x, y).item()
    assert got == pytest.approx(ref_clustering(x, y, gamma), rel=1e-9, abs=1e-12)


def test_clustering_is_zero_when_classes_are_tight_and_far_apart():
    centres = torch.eye(3, dtype=torch.float64) * 10
    x = centres.repeat_interleave(4, dim=0) + 0.01 * torch.randn(12, 3, generator=torch.Generator().manual_seed(0),
                                                                 dtype=torch.float64)
    y = torch.arange(3).repeat_interleave(4)
    assert L.ClusteringLoss(gamma=1.0)(x, y).item() == pytest.approx(0.0, abs=1e-9)
    assert ref_clustering(x, y) == pytest.approx(0.0, abs=1e-9)


def test_batched_nmi_matches_sklearn():
    from baselines.losses.clustering import batched_nmi
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (20,), generator=g)
    assign = torch.randint(0, 4, (5, 20), generator=g)
    assign[0] = 0  # one cluster: NMI 0
    got = batched_nmi(assign, labels, 4, 3)
    for r in range(5):
        assert got[r].item() == pytest.approx(normalized_mutual_info_score(labels.tolist(), assign[r].tolist()),
                                              abs=1e-12)


# ------------------------------------------------------------------------------------ Proxy-NCA, ProxyNCA++
def proxies_for(seed, n_classes=3, dim=3):
    return torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)


def ref_proxy_nca(x, y, proxies, temperature=1.0, include_own=False):
    f, p, y = unit_rows(x), unit_rows(proxies), y.tolist()
    terms = []
    for i in range(len(y)):
        logits = [-sqdist(f[i], p[z]) / temperature for z in range(len(p))]
        den = logits if include_own else [logits[z] for z in range(len(p)) if z != y[i]]
        terms.append(-(logits[y[i]] - lse(den)))
    return mean(terms)


@pytest.mark.parametrize("seed", SEEDS)
def test_proxy_nca_matches_loop_and_pml_differs(seed):
    x, y = batch(seed)
    proxies = proxies_for(seed)
    ours = with_proxies(L.ProxyNCALoss(num_classes=3, embedding_size=3).double(), proxies)(x, y).item()
    assert ours == pytest.approx(ref_proxy_nca(x, y, proxies), rel=1e-9)
    theirs = with_proxies(pml.ProxyNCALoss(num_classes=3, embedding_size=3).double(), proxies)(x, y).item()
    assert theirs == pytest.approx(ref_proxy_nca(x, y, proxies, include_own=True), rel=1e-9)
    assert theirs != pytest.approx(ours, rel=1e-3)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("temperature", [1.0, 1.0 / 9.0])
def test_proxy_nca_pp_matches_loop(seed, temperature):
    x, y = batch(seed)
    proxies = proxies_for(seed)
    loss = L.ProxyNCAPlusPlusLoss(num_classes=3, embedding_size=3, temperature=temperature).double()
    got = with_proxies(loss, proxies)(x, y).item()
    assert got == pytest.approx(ref_proxy_nca(x, y, proxies, temperature, include_own=True), rel=1e-9)


# -------------------------------------------------------------------------------------------- Proxy-Anchor
def ref_proxy_anchor(x, y, proxies, alpha=32.0, delta=0.1):
    f, p, y = unit_rows(x), unit_rows(proxies), y.tolist()
    cos = lambda i, c: sum(a * b for a, b in zip(f[i], p[c]))  # noqa: E731
    pos_terms, neg_terms = [], []
    for c in range(len(p)):
        pos = [-alpha * (cos(i, c) - delta) for i in range(len(y)) if y[i] == c]  # D = -cos: e^{alpha(D + delta)}
        neg = [alpha * (cos(i, c) + delta) for i in range(len(y)) if y[i] != c]  # e^{-alpha(D - delta)}
        if pos:
            pos_terms.append(lse([0.0] + pos))  # log(1 + sum)
        neg_terms.append(lse([0.0] + neg))
    return mean(pos_terms) + mean(neg_terms)


@pytest.mark.parametrize("seed", SEEDS)
def test_proxy_anchor_matches_loop(seed):
    x, y = batch(seed, n_classes=3)
    proxies = proxies_for(seed, n_classes=4)  # one proxy without samples in the batch: P+ != P
    loss = with_proxies(L.ProxyAnchorLoss(num_classes=4, embedding_size=3).double(), proxies)
    assert loss(x, y).item() == pytest.approx(ref_proxy_anchor(x, y, proxies), rel=1e-9)


@pytest.mark.parametrize("cls", [L.ProxyNCALoss, L.ProxyNCAPlusPlusLoss, L.ProxyAnchorLoss])
def test_proxies_get_gradients(cls):
    x, y = batch(0)
    loss = cls(num_classes=3, embedding_size=3).double()
    loss(x, y).backward()
    assert loss.proxies.grad is not None and torch.isfinite(loss.proxies.grad).all()
    assert loss.proxies.grad.abs().sum() > 0
