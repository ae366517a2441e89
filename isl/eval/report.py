"""The shared evaluation of an embedding: weighted kNN accuracy (Wu et al. 2018), k-means NMI / ACC / ARI and
a linear probe (isl.eval.linear), assembled into one plain dict and written as JSON.

Protocol (instance discrimination's kNN, the "whole" clustering protocol by default): kNN bank =
labelled train features, queries = labelled test features, k = 200, tau = 0.1. k-means with K = number of
distinct classes among the clustered points, on "all" (train + test, as CC / ProPos), "test" or "train";
`cluster_on` is recorded in the result. Points whose label is negative (STL-10's unlabeled split carries
-1) have no class: they are left out of the kNN bank, the kNN queries and the clustering. The linear probe is
trained on the labelled kNN-bank features and scored on the queries (top-1).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from isl.eval.clustering import cluster_metrics, kmeans, resolve_kmeans_backend
from isl.eval.knn import weighted_knn_accuracy
from isl.eval.linear import linear_probe as fit_linear_probe
from isl.neighbors import resolve_backend

CLUSTER_ON = ("all", "test", "train")
BACKENDS = ("auto", "faiss", "torch", "sklearn")


def _split_backend(backend: str) -> tuple[str, str]:
    """One switch for both searches: "faiss" -> (faiss, faiss); "torch" / "sklearn" -> (torch, sklearn)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown evaluation backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "auto", "auto"
    if backend == "faiss":
        return "faiss", "faiss"
    return "torch", "sklearn"


def _labelled(features, labels, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with a non-negative label. features: N x d, labels: N."""
    features = torch.as_tensor(features)
    labels = torch.as_tensor(labels).long()
    if features.dim() != 2 or labels.dim() != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"{name}: expected features N x d and labels N, got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    keep = labels >= 0  # N
    return features[keep], labels[keep]


def evaluate_embeddings(train_features, train_labels, test_features, test_labels, *, k: int = 200,
                        temperature: float = 0.1, kmeans_restarts: int = 10, seed: int = 0,
                        backend: str = "auto", cluster_on: str = "all", linear_probe: bool = True) -> dict:
    """kNN accuracy and k-means NMI / ACC / ARI of an embedding, plus the settings that produced them.

    train_features: N x d, train_labels: N (negative = unlabelled), test_features: M x d, test_labels: M.
    backend: "auto" | "faiss" | "torch" | "sklearn" ("torch" and "sklearn" both mean: no faiss, i.e. torch
    kNN and scikit-learn k-means). linear_probe: also fit the linear probe (linear_acc; NaN when off).
    Returns {knn_acc, nmi, acc, ari, linear_acc, knn_k, knn_temperature, cluster_on, n_clusters,
    kmeans_restarts, ...} with plain Python values, ready for JSON.
    """
    if cluster_on not in CLUSTER_ON:
        raise ValueError(f"cluster_on={cluster_on!r}; choose one of {CLUSTER_ON}")
    knn_backend, kmeans_backend = _split_backend(backend)
    x_train, y_train = _labelled(train_features, train_labels, "train")
    x_test, y_test = _labelled(test_features, test_labels, "test")
    if x_train.shape[0] == 0 or x_test.shape[0] == 0:
        raise ValueError(f"need labelled train and test points, got {x_train.shape[0]} and {x_test.shape[0]}")
    num_classes = int(torch.cat([y_train, y_test]).max()) + 1
    knn_acc = weighted_knn_accuracy(x_train, y_train, x_test, y_test, k=k, temperature=temperature,
                                    num_classes=num_classes, backend=knn_backend)

    parts = {"all": [(x_train, y_train), (x_test, y_test)], "train": [(x_train, y_train)],
             "test": [(x_test, y_test)]}[cluster_on]
    x_clu = torch.cat([x.float().cpu() for x, _ in parts])  # P x d
    y_clu = torch.cat([y.cpu() for _, y in parts]).numpy()  # P
    n_clusters = int(np.unique(y_clu).size)
    y_pred = kmeans(x_clu, n_clusters, restarts=kmeans_restarts, seed=seed, backend=kmeans_backend)  # P
    scores = cluster_metrics(y_clu, y_pred)
    probe = {"linear_acc": float("nan")}
    if linear_probe:
        probe = fit_linear_probe(x_train.float(), y_train, x_test.float(), y_test, num_classes=num_classes,
                                 seed=seed)
    return {
        "knn_acc": knn_acc, "nmi": scores["nmi"], "acc": scores["acc"], "ari": scores["ari"], **probe,
        "knn_k": int(min(k, x_train.shape[0])), "knn_temperature": float(temperature),
        "knn_bank_size": int(x_train.shape[0]), "knn_queries": int(x_test.shape[0]),
        "cluster_on": cluster_on, "n_clusters": n_clusters, "n_clustered": int(y_clu.size),
        "kmeans_restarts": int(kmeans_restarts), "seed": int(seed), "backend": backend,
        # what "auto" ran on this machine, so a result file says which search and k-means made its numbers
        "knn_backend": resolve_backend(knn_backend, x_train.device),
        "kmeans_backend": resolve_kmeans_backend(kmeans_backend),
    }


def _to_plain(obj):
    """json.dump fallback for numpy / torch scalars and arrays."""
    if isinstance(obj, (np.generic, torch.Tensor)) and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write `data` to `path` as JSON (sorted keys, indent 2) atomically: temp file in the same folder,
    then os.replace, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, sort_keys=True, indent=2, default=_to_plain)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
