"""Batch pair geometry shared by the Deep_metric losses: distance matrices, pair masks, masked reductions.

Source: the loss family of github bnulihaixia/Deep_metric (source document 003). The original code splits
the B x B distance matrix into a (B x P) positive and a (B x N) negative block, which only works when every
class has the same number of instances, and then loops over the rows. Here every loss works on the full
B x B matrix with boolean masks instead, so any label counts work and no Python loop runs over samples:

    pos_mask[i, j]  j is a positive of anchor i (same label, j != i)       ("pos_pair" rows in the source)
    neg_mask[i, j]  j is a negative of anchor i (different label)          ("neg_pair" rows in the source)

Masked reductions below never produce NaN, in value or gradient, for rows whose mask is empty: they return
a placeholder (0) plus a flag, and the caller drops those rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from ..losses.base import NORM_EPS

SQRT_EPS = 1e-12  # squared distances are clamped here before the sqrt: finite gradient for duplicate points


def euclidean_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances. x: ... x B x d -> ... x B x B (clamped at 1e-6, never 0, as the source)."""
    return squared_distances(x, x).clamp_min(SQRT_EPS).sqrt()


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||x_i - y_j||^2 for x: ... x B x d, y: ... x M x d -> ... x B x M (clamped at 0)."""
    xx = x.pow(2).sum(-1, keepdim=True)  # ... x B x 1
    yy = y.pow(2).sum(-1).unsqueeze(-2)  # ... x 1 x M
    return (xx + yy - 2.0 * x @ y.transpose(-1, -2)).clamp_min(0.0)  # ... x B x M


def inner_products(x: torch.Tensor) -> torch.Tensor:
    """Similarity matrix x x^T (the source's `similarity`). x: ... x B x d -> ... x B x B."""
    return x @ x.transpose(-1, -2)


def pair_masks(labels: torch.Tensor, indices_tuple=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos_mask, neg_mask), both B x B bool. From the labels, or from a miner's indices_tuple when given.

    indices_tuple: pml's (anchors, positives, negatives) triplets or (a1, p, a2, n) pairs; the pairs they
    name become the only positives / negatives, so these losses compose with pml's miners.
    """
    batch = labels.shape[0]
    if indices_tuple is None:
        same = labels.unsqueeze(0) == labels.unsqueeze(1)  # B x B
        eye = torch.eye(batch, dtype=torch.bool, device=labels.device)
        return same & ~eye, ~same
    a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels)
    pos = torch.zeros(batch, batch, dtype=torch.bool, device=labels.device)
    neg = torch.zeros_like(pos)
    pos[a1, p] = True
    neg[a2, n] = True
    return pos, neg


def masked_logsumexp(x: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """log sum_{mask} exp(x) along `dim`. Returns (lse, nonempty); lse is 0 where the mask row is empty."""
    nonempty = mask.any(dim)
    x = x.masked_fill(~mask, float("-inf"))
    peak = x.amax(dim, keepdim=True).detach()
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.exp(x - peak).sum(dim)  # exp(-inf) = 0: masked entries add nothing and get no gradient
    total = torch.where(nonempty, total, torch.ones_like(total))  # log(1) = 0 placeholder, no inf in backward
    return torch.log(total) + peak.squeeze(dim), nonempty


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Mean of x over mask along `dim`; 0 for an empty row."""
    count = mask.sum(dim).clamp_min(1)
    return torch.where(mask, x, torch.zeros_like(x)).sum(dim) / count


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sum of x over mask along `dim`; 0 for an empty row."""
    return torch.where(mask, x, torch.zeros_like(x)).sum(dim)


def masked_max(x: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Max of x over mask along `dim`; 0 for an empty row."""
    out = x.masked_fill(~mask, float("-inf")).amax(dim)
    return torch.where(mask.any(dim), out, torch.zeros_like(out))


def masked_min(x: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Min of x over mask along `dim`; 0 for an empty row."""
    out = x.masked_fill(~mask, float("inf")).amin(dim)
    return torch.where(mask.any(dim), out, torch.zeros_like(out))


def smallest_k(x: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest masked entries of each row, ascending (the source's `torch.sort(pos_pair)[0][:k]`).

    x, mask: ... x B x M. Returns (values ... x B x k', keep ... x B x k'), k' = min(k, M); keep is False
    past the row's number of masked entries (values there are a finite placeholder).
    """
    k = min(k, x.shape[-1])
    values, order = x.masked_fill(~mask, float("inf")).topk(k, dim=-1, largest=False, sorted=True)
    keep = mask.gather(-1, order)  # ... x B x k'
    return torch.where(keep, values, torch.zeros_like(values)), keep


def class_onehot(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(onehot B x C float, class_of C) for the C distinct labels of the batch, in sorted label order."""
    classes, inverse = torch.unique(labels, return_inverse=True)
    onehot = torch.nn.functional.one_hot(inverse, classes.shape[0])  # B x C
    return onehot, classes


def class_centers(embeddings: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Mean embedding of each class. embeddings: B x d, onehot: B x C (any 0/1 dtype) -> C x d."""
    weights = onehot.to(embeddings.dtype)  # B x C
    return (weights.t() @ embeddings) / weights.sum(0).clamp_min(1.0).unsqueeze(1)


def embedding_slices(embeddings: torch.Tensor, num_slices: int, normalize: bool) -> torch.Tensor:
    """Cut B x d into `num_slices` contiguous parts (torch.tensor_split's sizes), zero-padded to a common
    width: S x B x ceil(d / S). Zero padding changes no distance, norm or inner product.
    """
    dim = embeddings.shape[1]
    if not 1 <= num_slices <= dim:
        raise ValueError(f"num_slices={num_slices} must be between 1 and the embedding size {dim}")
    width = -(-dim // num_slices)
    slice_ids = torch.arange(num_slices, device=embeddings.device)
    sizes = dim // num_slices + (slice_ids < dim % num_slices).long()  # S
    starts = torch.cumsum(sizes, 0) - sizes  # S
    offsets = torch.arange(width, device=embeddings.device)  # w
    index = torch.where(offsets < sizes.unsqueeze(1), starts.unsqueeze(1) + offsets, dim)  # S x w; dim -> a 0 column
    padded = F.pad(embeddings, (0, 1))  # B x (d + 1)
    parts = padded[:, index].permute(1, 0, 2)  # S x B x w
    return F.normalize(parts, dim=-1, eps=NORM_EPS) if normalize else parts  # see baselines/losses/base.py
