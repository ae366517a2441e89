"""Look inside a trained encoder: its features on the evaluation splits, a 2-D t-SNE embedding (van der Maaten &
Hinton 2008, scikit-learn's TSNE) and the clustering confusion matrix under the Hungarian cluster-to-class map
(the map behind the ACC score of `isl.eval.clustering`).

Any checkpoint with the project's conventions works (ISL, NPID, knn mining, baselines): keys "config" (a
`to_dict` config) and "model" (the encoder's state_dict); the encoder is rebuilt from the saved config.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics.cluster import contingency_matrix


def load_encoder(ckpt: str | Path, data_root: str | None = None, device: str = "cpu"):
    """(encoder in eval mode, its Config) from a checkpoint; `data_root` replaces the saved machine path."""
    from isl.builders import build_encoder_from_config
    from isl.checkpoint import load_module_state, load_saved_run

    state, cfg = load_saved_run(ckpt, map_location=device)
    if data_root:
        cfg.data.root = data_root
    model = build_encoder_from_config(cfg).to(device)
    load_module_state(model, state["model"], "model")
    return model.eval(), cfg


def _class_names(dataset, n_classes: int) -> list[str]:
    for obj in (dataset, getattr(dataset, "dataset", None), getattr(dataset, "base", None)):
        names = getattr(obj, "classes", None)
        if names is not None and len(names) >= n_classes:
            return [str(n) for n in names]
    return [str(i) for i in range(n_classes)]


def checkpoint_features(ckpt: str | Path, split: str = "test", data_root: str | None = None,
                        device: str = "cpu") -> tuple[np.ndarray, np.ndarray, list[str], object]:
    """Features of a checkpoint's encoder: split "test" (kNN queries), "train" (kNN bank), "all" (both) or
    "cluster" (the points the run clustered: its `eval.cluster_on`).

    Returns (features N x d float32, labels N int64 (unlabelled rows dropped), class names, Config).
    """
    from isl.builders import build_eval_loaders
    from isl.eval import extract_features

    if split not in ("test", "train", "all", "cluster"):
        raise ValueError(f"split={split!r}; choose test, train, all or cluster")
    model, cfg = load_encoder(ckpt, data_root, device)
    if split == "cluster":
        split = cfg.eval.cluster_on
    bank_loader, query_loader = build_eval_loaders(cfg)
    loaders = {"test": [query_loader], "train": [bank_loader], "all": [bank_loader, query_loader]}[split]
    feats, labels = [], []
    for loader in loaders:
        f, y, _ = extract_features(model, loader, device)
        keep = y >= 0  # N: STL-10's unlabeled rows carry -1
        feats.append(f[keep].numpy())
        labels.append(y[keep].numpy())
    features, y_all = np.concatenate(feats), np.concatenate(labels).astype(np.int64)
    return features, y_all, _class_names(query_loader.dataset, int(y_all.max()) + 1), cfg


def tsne_2d(features: np.ndarray, seed: int = 0, max_points: int = 5000, perplexity: float = 30.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """t-SNE of at most `max_points` rows (a seeded random subset) of features N x d, cosine metric.

    Returns (coords M x 2, kept row indices M), M = min(N, max_points).
    """
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {n}")
    keep = np.sort(np.random.default_rng(seed).permutation(n)[:max_points]) if n > max_points else np.arange(n)
    x = features[keep]  # M x d
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (len(keep) - 1) / 3), init="pca", metric="cosine",
                random_state=seed)
    return tsne.fit_transform(x).astype(np.float32), keep


def hungarian_map(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, int]:
    """Best one-to-one map cluster -> class (maximum matched count, scipy's linear_sum_assignment)."""
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    counts = contingency_matrix(y_true, y_pred)  # classes x clusters (sorted unique values)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {int(clusters[c]): int(classes[r]) for r, c in zip(rows, cols)}


def mapped_confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list[int], list[str], float]:
    """Confusion matrix of a clustering after the Hungarian map.

    Returns (matrix C x C' counts, row classes C, column names C', accuracy): column j counts the points whose
    cluster maps to class j; a last column "unmatched" holds clusters left without a class (more clusters than
    classes). The trace over the first C columns / N is the clustering accuracy (ACC).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"y_true and y_pred must be equal-length non-empty vectors, got {y_true.shape} and "
                         f"{y_pred.shape}")
    mapping = hungarian_map(y_true, y_pred)
    classes = [int(c) for c in np.unique(y_true)]
    col_of = {c: i for i, c in enumerate(classes)}
    unmatched = len(classes)
    mapped = np.array([col_of[mapping[int(p)]] if int(p) in mapping else unmatched for p in np.unique(y_pred)])
    pred_col = mapped[np.searchsorted(np.unique(y_pred), y_pred)]  # N: column of each point
    true_row = np.searchsorted(np.array(classes), y_true)  # N
    n_cols = len(classes) + int((pred_col == unmatched).any())
    matrix = np.zeros((len(classes), n_cols), dtype=np.int64)
    np.add.at(matrix, (true_row, pred_col), 1)
    names = [str(c) for c in classes] + (["unmatched"] if n_cols > len(classes) else [])
    return matrix, classes, names, float(np.trace(matrix[:, : len(classes)]) / y_true.size)
