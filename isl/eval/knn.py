"""Weighted k-nearest-neighbour classification of embeddings (Wu et al., CVPR 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", Sec. 3.5).

The instance-discrimination protocol: L2-normalise bank and queries; for each query take the k bank
entries with the largest cosine s_i; each casts a vote exp(s_i / tau) for its class; predict the class with
the largest summed vote.

Notation -> code: bank features -> `train_features`, their classes -> `train_labels`, tau -> `temperature`,
k -> `k`, C (number of classes) -> `num_classes`.

Neighbour search is `isl.neighbors.topk_inner_product` (faiss or a torch matmul chunked over queries), so a
10k x 50k problem never materialises Q x N at once; the vote matrix is built `chunk_size` queries at a time.
Ties in the vote go to the lowest class index (torch.argmax returns the first maximum).
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from isl.neighbors import topk_inner_product

log = logging.getLogger(__name__)


def _check_inputs(train_features: torch.Tensor, train_labels: torch.Tensor, queries: torch.Tensor,
                  k: int, temperature: float, num_classes: int | None, chunk_size: int) -> int:
    """Validate shapes and values; return the number of classes C."""
    if train_features.dim() != 2 or queries.dim() != 2:
        raise ValueError(f"expected train_features N x d and queries Q x d, got shapes "
                         f"{tuple(train_features.shape)} and {tuple(queries.shape)}")
    if train_features.shape[1] != queries.shape[1]:
        raise ValueError(f"train_features have d={train_features.shape[1]} but queries have "
                         f"d={queries.shape[1]}: both must come from the same encoder")
    if train_features.shape[0] == 0:
        raise ValueError("the kNN bank (train_features) is empty: it needs at least one labelled point")
    if train_labels.dim() != 1 or train_labels.shape[0] != train_features.shape[0]:
        raise ValueError(f"train_labels must be a vector of N={train_features.shape[0]} class indices, "
                         f"got shape {tuple(train_labels.shape)}")
    if train_labels.dtype.is_floating_point or train_labels.dtype == torch.bool:
        raise ValueError(f"train_labels must be integer class indices, got dtype {train_labels.dtype}")
    if int(train_labels.min()) < 0:
        raise ValueError("train_labels contain negative values (unlabelled points?): drop those rows from "
                         "the bank before calling weighted kNN")
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    top = int(train_labels.max()) + 1
    if num_classes is None:
        return top
    if num_classes < top:
        raise ValueError(f"num_classes={num_classes} but train_labels go up to {top - 1}: pass "
                         f"num_classes >= {top} or None to infer it")
    return num_classes


@torch.no_grad()
def weighted_knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, queries: torch.Tensor,
                         k: int = 200, temperature: float = 0.1, num_classes: int | None = None,
                         backend: str = "auto", chunk_size: int = 4096) -> torch.Tensor:
    """Predicted class of each query by the weighted kNN vote.

    train_features: N x d bank, train_labels: N int64 in [0, C), queries: Q x d (any float dtype; both sides
    are L2-normalised here). k larger than N is clipped to N with a warning. backend: "auto" | "faiss" |
    "torch" (see `isl.neighbors`). Returns Q int64 class indices on the queries' device.
    """
    num_classes = _check_inputs(train_features, train_labels, queries, k, temperature, num_classes, chunk_size)
    n_bank = train_features.shape[0]
    if k > n_bank:
        log.warning("weighted kNN: k=%d exceeds the bank size %d; using k=%d", k, n_bank, n_bank)
        k = n_bank
    device = queries.device
    bank = F.normalize(train_features.detach().float().to(device), dim=1)  # N x d
    queries = F.normalize(queries.detach().float(), dim=1)  # Q x d
    labels = train_labels.to(device=device, dtype=torch.long)  # N
    preds = []
    for start in range(0, queries.shape[0], chunk_size):
        sims, idx = topk_inner_product(queries[start:start + chunk_size], bank, k, backend=backend,
                                       chunk_size=chunk_size)  # sims, idx: c x k, best first
        # exp(s / tau) up to a per-query factor exp(-s_max / tau): the argmax is unchanged and a small tau
        # cannot overflow float32.
        weights = ((sims - sims[:, :1]) / temperature).exp()  # c x k
        votes = torch.zeros(sims.shape[0], num_classes, device=device, dtype=weights.dtype)  # c x C
        votes.scatter_add_(1, labels[idx], weights)
        preds.append(votes.argmax(dim=1))  # c
    if not preds:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(preds)  # Q


def weighted_knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, queries: torch.Tensor,
                          query_labels: torch.Tensor, k: int = 200, temperature: float = 0.1,
                          num_classes: int | None = None, backend: str = "auto",
                          chunk_size: int = 4096) -> float:
    """Fraction of queries (Q x d, true classes `query_labels`: Q) whose weighted kNN vote is right."""
    if query_labels.dim() != 1 or query_labels.shape[0] != queries.shape[0]:
        raise ValueError(f"query_labels must be a vector of Q={queries.shape[0]} class indices, got shape "
                         f"{tuple(query_labels.shape)}")
    if queries.shape[0] == 0:
        raise ValueError("no queries: weighted kNN accuracy needs at least one labelled query")
    preds = weighted_knn_predict(train_features, train_labels, queries, k=k, temperature=temperature,
                                 num_classes=num_classes, backend=backend, chunk_size=chunk_size)  # Q
    return float((preds == query_labels.to(preds.device)).double().mean())
