"""k-means and the clustering scores (isl.eval.clustering), and the result dict / JSON (isl.eval.report).

NMI and ARI are checked against loops over their textbook definitions (and scikit-learn's functions); ACC
against a brute-force search over every cluster-to-class permutation.
"""
import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from isl.eval.clustering import (_kmeans_faiss, ari, cluster_accuracy, cluster_metrics, kmeans, nmi,
                                 resolve_kmeans_backend)
from isl.eval.knn import weighted_knn_accuracy
from isl.eval.report import evaluate_embeddings, write_json
from isl.neighbors import faiss_available

KMEANS_BACKENDS = ["sklearn"] + (["faiss"] if faiss_available() else [])


def brute_force_acc(y_true, y_pred):
    """Best accuracy over every one-to-one map, padding the smaller side with empty labels."""
    classes, clusters = sorted(set(y_true)), sorted(set(y_pred))
    size = max(len(classes), len(clusters))
    counts = [[0] * size for _ in range(size)]  # clusters x classes, zero-padded to square
    for t, p in zip(y_true, y_pred):
        counts[clusters.index(p)][classes.index(t)] += 1
    best = max(sum(counts[i][perm[i]] for i in range(size)) for perm in itertools.permutations(range(size)))
    return best / len(y_true)


def loop_nmi(y_true, y_pred):
    """MI / mean(H(true), H(pred)) from counts; 1.0 when both labelings are a single cluster."""
    n = len(y_true)
    ct, cp, cj = Counter(y_true), Counter(y_pred), Counter(zip(y_true, y_pred))
    if len(ct) == 1 and len(cp) == 1:
        return 1.0
    mi = sum(c / n * math.log(n * c / (ct[t] * cp[p])) for (t, p), c in cj.items())
    h_true = -sum(c / n * math.log(c / n) for c in ct.values())
    h_pred = -sum(c / n * math.log(c / n) for c in cp.values())
    return mi / ((h_true + h_pred) / 2)


def loop_ari(y_true, y_pred):
    """Hubert-Arabie ARI from a loop over all unordered pairs; 1.0 for identical partitions."""
    n = len(y_true)
    both = same_true = same_pred = 0
    for i, j in itertools.combinations(range(n), 2):
        st, sp = y_true[i] == y_true[j], y_pred[i] == y_pred[j]
        both += st and sp
        same_true += st
        same_pred += sp
    if same_true == same_pred == both:  # the two partitions agree on every pair
        return 1.0
    expected = same_true * same_pred / math.comb(n, 2)
    return (both - expected) / ((same_true + same_pred) / 2 - expected)


def random_labelings():
    """(y_true, y_pred) pairs: equal and unequal numbers of clusters and classes, single-cluster cases."""
    out = []
    for seed, (n, n_true, n_pred) in enumerate([(30, 3, 3), (25, 4, 2), (40, 2, 5), (17, 5, 5), (50, 3, 6),
                                                (12, 1, 3), (20, 4, 1)]):
        rng = np.random.default_rng(seed)
        out.append((rng.integers(0, n_true, n).tolist(), rng.integers(0, n_pred, n).tolist()))
    out.append(([0] * 9, [0] * 9))  # both single-cluster
    out.append(([0, 0, 1, 1, 2, 2], [7, 7, -1, -1, 3, 3]))  # perfect up to renaming, odd label values
    return out


@pytest.mark.parametrize("y_true,y_pred", random_labelings())
def test_scores_match_definitions(y_true, y_pred):
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(brute_force_acc(y_true, y_pred), abs=1e-12)
    assert abs(nmi(y_true, y_pred) - loop_nmi(y_true, y_pred)) < 1e-9
    assert abs(nmi(y_true, y_pred) - normalized_mutual_info_score(y_true, y_pred)) < 1e-9
    assert abs(ari(y_true, y_pred) - loop_ari(y_true, y_pred)) < 1e-9
    assert abs(ari(y_true, y_pred) - adjusted_rand_score(y_true, y_pred)) < 1e-9
    metrics = cluster_metrics(np.array(y_true), torch.tensor(y_pred))
    assert set(metrics) == {"nmi", "acc", "ari"} and all(math.isfinite(v) for v in metrics.values())


def test_score_edge_cases():
    assert cluster_accuracy([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    assert cluster_accuracy([0, 1, 2, 3], [0, 0, 0, 0]) == 0.25  # one cluster can claim one class only
    with pytest.raises(ValueError, match="labels but"):
        cluster_accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        nmi([], [])
    with pytest.raises(ValueError, match="1-D"):
        ari(np.zeros((2, 2)), np.zeros((2, 2)))


def blobs(seed, n_per=40, k=4, d=8):
    """k tight clusters around orthogonal directions with different norms (norm carries no class)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:k] * 3.0
    x = np.concatenate([c + 0.15 * rng.standard_normal((n_per, d)) for c in centres])
    x *= rng.uniform(0.2, 5.0, (x.shape[0], 1))
    return x.astype(np.float32), np.repeat(np.arange(k), n_per)


@pytest.mark.parametrize("backend", KMEANS_BACKENDS)
def test_kmeans_recovers_blobs_and_is_deterministic(backend):
    x, y = blobs(0)
    labels = kmeans(x, 4, restarts=3, seed=1, backend=backend)
    assert labels.dtype == np.int64 and labels.shape == y.shape
    assert cluster_accuracy(y, labels) == 1.0
    again = kmeans(torch.from_numpy(x), 4, restarts=3, seed=1, backend=backend)
    assert np.array_equal(labels, again)


@pytest.mark.skipif(not faiss_available(), reason="needs faiss")
def test_faiss_kmeans_uses_all_points():
    # With faiss's default of 256 points per centroid, 3,000 points and K=2 would be subsampled to 512 and
    # the centroids would be means of the sample only (off by ~0.08 here); over all points, Lloyd converges
    # to the means of the full clusters.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 3)).astype(np.float32)
    x[:1500, 0] += 1.5  # two overlapping clouds: one clear optimum, reached in a few iterations
    x[1500:, 0] -= 1.5
    labels, centroids = _kmeans_faiss(x, 2, restarts=1, seed=0, max_iter=60)
    means = np.stack([x[labels == c].mean(0) for c in range(2)])
    assert np.abs(means - centroids).max() < 1e-4


def test_kmeans_bad_input():
    x, _ = blobs(1, n_per=2, k=2)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans(x, 5)
    with pytest.raises(ValueError, match="backend"):
        kmeans(x, 2, backend="cuml")
    with pytest.raises(ValueError, match="N x d"):
        kmeans(x[0], 1)
    with pytest.raises(ValueError, match="NaN"):
        kmeans(np.full((4, 2), np.nan), 2)


# --- isl.eval.report ---------------------------------------------------------------------------------

def split_blobs():
    x, y = blobs(2, n_per=30, k=3)
    train = np.arange(len(y)) % 3 != 0
    return torch.from_numpy(x[train]), torch.from_numpy(y[train]), torch.from_numpy(x[~train]), \
        torch.from_numpy(y[~train])


@pytest.mark.parametrize("cluster_on,n_points", [("all", 90), ("train", 60), ("test", 30)])
def test_evaluate_embeddings(cluster_on, n_points):
    xtr, ytr, xte, yte = split_blobs()
    res = evaluate_embeddings(xtr, ytr, xte, yte, k=10, kmeans_restarts=2, cluster_on=cluster_on)
    assert {"knn_acc", "nmi", "acc", "ari", "knn_k", "knn_temperature", "cluster_on", "n_clusters",
            "kmeans_restarts"} <= set(res)
    assert res["knn_acc"] == weighted_knn_accuracy(xtr, ytr, xte, yte, k=10)
    assert res["n_clusters"] == 3 and res["n_clustered"] == n_points and res["cluster_on"] == cluster_on
    assert res["acc"] == 1.0 and res["nmi"] == pytest.approx(1.0) and res["ari"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["auto", "faiss", "torch", "sklearn"])
def test_evaluate_embeddings_names_the_backends_it_ran(backend, monkeypatch):
    """"auto" is recorded as what it ran, so a result file says which search and k-means made its numbers."""
    if backend == "faiss" and not faiss_available():
        pytest.skip("faiss not installed")
    monkeypatch.setattr("isl.eval.clustering.faiss_gpu_available", lambda: False)  # a CPU machine
    xtr, ytr, xte, yte = split_blobs()
    res = evaluate_embeddings(xtr, ytr, xte, yte, k=10, kmeans_restarts=2, backend=backend)
    expected = {"auto": ("faiss" if faiss_available() else "torch", "sklearn"), "faiss": ("faiss", "faiss"),
                "torch": ("torch", "sklearn"), "sklearn": ("torch", "sklearn")}[backend]
    assert (res["knn_backend"], res["kmeans_backend"]) == expected and res["backend"] == backend
    monkeypatch.setattr("isl.eval.clustering.faiss_gpu_available", lambda: True)  # a GPU faiss index
    assert resolve_kmeans_backend("auto") == "faiss" and resolve_kmeans_backend("sklearn") == "sklearn"
    with pytest.raises(ValueError, match="k-means backend"):
        resolve_kmeans_backend("torch")


def test_unlabelled_points_are_left_out():
    xtr, ytr, xte, yte = split_blobs()
    # Unlabelled points (label -1) in their own far-away direction: clustered, they would take a cluster.
    extra = torch.zeros(40, xtr.shape[1])
    extra[:, -1] = 1.0
    xtr_u, ytr_u = torch.cat([xtr, extra]), torch.cat([ytr, torch.full((40,), -1)])
    kwargs = dict(k=10, kmeans_restarts=2, backend="torch")
    with_unlabelled = evaluate_embeddings(xtr_u, ytr_u, xte, yte, **kwargs)
    assert with_unlabelled == evaluate_embeddings(xtr, ytr, xte, yte, **kwargs)
    assert with_unlabelled["knn_bank_size"] == 60 and with_unlabelled["n_clusters"] == 3


def test_evaluate_embeddings_bad_input():
    xtr, ytr, xte, yte = split_blobs()
    with pytest.raises(ValueError, match="cluster_on"):
        evaluate_embeddings(xtr, ytr, xte, yte, cluster_on="val")
    with pytest.raises(ValueError, match="backend"):
        evaluate_embeddings(xtr, ytr, xte, yte, backend="gpu")
    with pytest.raises(ValueError, match="labelled"):
        evaluate_embeddings(xtr, -torch.ones_like(ytr), xte, yte)


def test_write_json_atomic_sorted(tmp_path):
    path = tmp_path / "sub" / "results.json"
    write_json(path, {"b": np.float32(0.5), "a": torch.tensor(3), "c": np.arange(2)})
    text = path.read_text()
    assert json.loads(text) == {"a": 3, "b": 0.5, "c": [0, 1]}
    assert text.index('"a"') < text.index('"b"') < text.index('"c"') and '\n  "a": 3' in text
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert json.loads(path.read_text())["a"] == 3  # a failed write leaves the old file intact
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left behind
