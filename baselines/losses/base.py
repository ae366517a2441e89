"""The input contract every baseline loss checks before pytorch-metric-learning sees the batch.

pytorch-metric-learning (pml) accepts almost anything and fails late with an index error or a silent zero
loss; these checks fail early with a message that says what was wrong and how to fix it:
embeddings B x d floating point, labels a 1-D integer tensor of length B, B >= 2, and for losses with one
learnable proxy per class, labels in [0, num_classes).

Normalisation: pml L2-normalises with torch's eps of 1e-12, so a zero (or tiny) embedding gets gradients up to
1e12. Every loss here normalises with `NORM_EPS` instead: x / max(||x||, NORM_EPS). Rows at least NORM_EPS
long (an encoder's unit rows) are normalised exactly as before; shorter rows are scaled by 1 / NORM_EPS, which
bounds the gradient by that factor.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

MIN_BATCH = 2
NORM_EPS = 1e-3


def bounded_normalize(embeddings: torch.Tensor, p: float = 2, dim: int = 1, eps: float = NORM_EPS,
                      **kwargs) -> torch.Tensor:
    """F.normalize with eps = NORM_EPS (see the module docstring); pml's `distance.normalize` signature."""
    return F.normalize(embeddings, p=p, dim=dim, eps=eps)


def check_batch(embeddings: torch.Tensor, labels: torch.Tensor | None, num_classes: int | None = None,
                name: str = "loss") -> None:
    """Raise ValueError/TypeError unless (embeddings B x d float, labels B int64-like) is a valid batch."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"{name}: embeddings must be a B x d tensor, got {shape}; flatten the encoder output "
                         "to (batch, features) first")
    if not embeddings.is_floating_point():
        raise TypeError(f"{name}: embeddings must be floating point, got {embeddings.dtype}")
    batch = embeddings.shape[0]
    if batch < MIN_BATCH:
        raise ValueError(f"{name}: a metric-learning loss compares samples with each other and needs a batch "
                         f"of at least {MIN_BATCH} samples, got {batch}; use a larger batch size (and "
                         "drop_last=True in the DataLoader so the last batch is not a single sample)")
    if labels is None:
        raise ValueError(f"{name}: labels are required (a 1-D integer tensor of length {batch})")
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name}: labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"{name}: labels must have shape ({batch},) to match embeddings {tuple(embeddings.shape)}, "
                         f"got {tuple(labels.shape)}; pass class indices, not one-hot vectors")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name}: labels must be an integer tensor (class indices), got {labels.dtype}; "
                        "use labels.long()")
    if num_classes is not None and labels.numel() > 0:
        low, high = int(labels.min()), int(labels.max())  # one sync per step; a wrong label is worth it
        if low < 0 or high >= num_classes:
            raise ValueError(f"{name}: labels must lie in [0, {num_classes}) (num_classes={num_classes}), got "
                             f"values in [{low}, {high}]; set num_classes to the data set's class count")


class CheckedInputMixin:
    """Put first in the bases of a pml loss: validates the batch, then runs pml's forward unchanged; the loss's
    distance normalises with `bounded_normalize`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        distance = getattr(self, "distance", None)
        if distance is not None:  # an instance attribute: pml calls self.distance.normalize(x, dim=...)
            distance.normalize = functools.partial(bounded_normalize, p=distance.p)

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        check_batch(embeddings, labels, getattr(self, "num_classes", None), type(self).__name__)
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)
