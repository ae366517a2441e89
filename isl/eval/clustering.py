"""k-means on embeddings and the three clustering scores of the field: NMI, ACC and ARI.

- k-means (Lloyd) with K = number of classes on L2-normalised features, over ALL points: faiss.Kmeans
  subsamples to `max_points_per_centroid` (256 by default) points per centroid, so it is raised to N here;
  `restarts` initialisations (faiss `nredo`, scikit-learn `n_init`), the one with the lowest objective is
  kept; a fixed `seed` makes the labels reproducible.
- NMI: normalised mutual information with arithmetic averaging, MI / ((H(y) + H(c)) / 2), exactly
  scikit-learn's `normalized_mutual_info_score` (some papers use the geometric mean: this one does not).
- ARI: adjusted Rand index (Hubert & Arabie 1985), scikit-learn's `adjusted_rand_score`.
- ACC: unsupervised clustering accuracy, the fraction of points that are right under the best one-to-one
  map of clusters to classes; the map is a maximum-weight matching on the contingency matrix (Hungarian
  algorithm, scipy's `linear_sum_assignment`). Rectangular matrices (#clusters != #classes) leave the
  surplus clusters or classes unmatched, so their points count as wrong.

Notation -> code: K -> `n_clusters`, y -> `y_true`, c -> `y_pred`.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from isl.neighbors import faiss, faiss_available, faiss_gpu_available

KMEANS_BACKENDS = ("auto", "faiss", "sklearn")


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (an all-zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # N x 1
    return x / np.maximum(norms, 1e-12)


def _as_features(features: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be N x d, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf: k-means needs finite embeddings")
    return x


def _kmeans_faiss(x: np.ndarray, n_clusters: int, restarts: int, seed: int,
                  max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss Lloyd k-means over all points. x: N x d float32. Returns (labels N int64, centroids K x d)."""
    km = faiss.Kmeans(x.shape[1], n_clusters, niter=max_iter, nredo=restarts, seed=seed, verbose=False,
                      max_points_per_centroid=x.shape[0],  # never subsample: every point is a training point
                      min_points_per_centroid=1,  # small data sets are fine; no warning
                      gpu=faiss_gpu_available())
    km.train(x)
    _, assign = km.index.search(x, 1)  # N x 1: nearest final centroid
    return assign[:, 0].astype(np.int64), km.centroids


def resolve_kmeans_backend(backend: str) -> str:
    """The k-means that `backend` runs here: auto -> faiss with a GPU faiss index, else sklearn."""
    if backend not in KMEANS_BACKENDS:
        raise ValueError(f"unknown k-means backend {backend!r}; choose one of {KMEANS_BACKENDS}")
    if backend == "auto":
        return "faiss" if faiss_gpu_available() else "sklearn"
    return backend


def kmeans(features: torch.Tensor | np.ndarray, n_clusters: int, restarts: int = 10, seed: int = 0,
           backend: str = "auto", max_iter: int = 100) -> np.ndarray:
    """Cluster index of each point by k-means on the L2-normalised rows of `features` (N x d).

    backend: "faiss" (all points, `restarts` redos, best objective kept), "sklearn" (KMeans with
    n_init=restarts, random_state=seed) or "auto": faiss only with a GPU faiss index, else scikit-learn (on CPU
    scikit-learn's Lloyd with early stopping is several times faster than faiss, which always runs max_iter;
    measured by tools/bench/eval.py, see docs/scale.md). Deterministic for a fixed seed.
    Returns N int64 labels in [0, n_clusters).
    """
    backend = resolve_kmeans_backend(backend)  # a bad name fails before any work
    x = _l2_normalise(_as_features(features))  # N x d
    if not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(f"n_clusters={n_clusters} must be between 1 and the number of points {x.shape[0]}")
    if restarts < 1 or max_iter < 1:
        raise ValueError(f"restarts={restarts} and max_iter={max_iter} must both be >= 1")
    if backend == "faiss":
        if not faiss_available():
            raise RuntimeError("k-means backend 'faiss' requested but faiss is not installed: "
                               "pip install faiss-cpu, or use backend='sklearn'")
        return _kmeans_faiss(x, n_clusters, restarts, seed, max_iter)[0]
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_clusters, n_init=restarts, random_state=seed, max_iter=max_iter)
    return km.fit_predict(x).astype(np.int64)


def _as_labels(y: torch.Tensor | np.ndarray | list, name: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of labels, got shape {y.shape}")
    return y


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape[0]} labels but y_pred has {y_pred.shape[0]}")
    if y_true.size == 0:
        raise ValueError("cannot score an empty clustering")
    return y_true, y_pred


def cluster_accuracy(y_true, y_pred) -> float:
    """Best one-to-one cluster-to-class accuracy (Hungarian map on the contingency matrix).

    y_true, y_pred: N labels (any integers; #clusters may differ from #classes). Returns a float in (0, 1].
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    counts = contingency_matrix(y_true, y_pred)  # classes x clusters
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / y_true.size)


def nmi(y_true, y_pred) -> float:
    """Normalised mutual information, arithmetic averaging (scikit-learn's definition)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    return float(normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic"))


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index (scikit-learn's definition)."""
    y_true, y_pred = _check_pair(y_true, y_pred)
    return float(adjusted_rand_score(y_true, y_pred))


def cluster_metrics(y_true, y_pred) -> dict[str, float]:
    """{"nmi", "acc", "ari"} of a clustering y_pred against classes y_true (both N labels)."""
    return {"nmi": nmi(y_true, y_pred), "acc": cluster_accuracy(y_true, y_pred), "ari": ari(y_true, y_pred)}
