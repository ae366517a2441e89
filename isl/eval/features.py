"""Extract an encoder's embeddings for a whole data set, placed by dataset index.

Used by the shared evaluation (weighted kNN, Wu et al. 2018; k-means) to score freshly extracted
test-transform features rather than a stale memory bank. The reference ISL code filled its feature matrix
at a running batch offset, which puts rows at the wrong place when the order is shuffled or a batch is
short; here every row goes to the index the dataset returned with it: features[indices] = f.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.inference_mode()
def _forward_all(model: nn.Module, loader: Iterable, device: torch.device | str,
                 n_items: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    features = labels = None
    seen = torch.zeros(n_items, dtype=torch.bool)  # N
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise ValueError("the loader must yield (images, targets, indices) batches; wrap the dataset so "
                             "that each item returns (image, target, index)")
        images, targets, indices = batch
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()  # B
        out = model(images.to(device, non_blocking=True))
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != indices.shape[0]:
            raise ValueError(f"the model must return a B x d feature tensor for a batch of {indices.shape[0]}, "
                             f"got {type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_items):
            raise ValueError(f"dataset index out of range [0, {n_items}): the loader's indices must be "
                             "positions in loader.dataset")
        if features is None:
            features = torch.zeros(n_items, out.shape[1], dtype=torch.float32)  # N x d
            labels = torch.full((n_items,), -1, dtype=torch.long)  # N
        features[indices] = out.float().cpu()  # rows by dataset index, not by batch offset
        labels[indices] = torch.as_tensor(targets, dtype=torch.long).cpu()
        seen[indices] = True
    if features is None:
        raise ValueError("the loader yielded no batches")
    if not bool(seen.all()):
        missing = int((~seen).sum())
        raise ValueError(f"{missing} of {n_items} dataset items were never yielded by the loader (drop_last=True "
                         "or a subset sampler?); evaluate with drop_last=False over the whole data set")
    return features, labels, torch.arange(n_items)


def extract_features(model: nn.Module, loader: Iterable, device: torch.device | str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embed every item of `loader.dataset` with `model` in eval mode under inference_mode.

    The loader yields (images B x ..., targets B, indices B) batches in any order. Returns
    (features N x d float32 on CPU, labels N int64, indices N int64) where row i belongs to dataset item i
    (so indices is arange(N)). The model's previous train/eval mode is restored afterwards.
    """
    dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__len__"):
        raise ValueError("extract_features needs a loader with a sized .dataset (a torch DataLoader)")
    was_training = model.training
    model.eval()
    try:
        return _forward_all(model, loader, device, len(dataset))
    finally:
        model.train(was_training)
