"""The embedded default data set: scikit-learn's bundled handwritten digits (real data, no download).

Source: sklearn.datasets.load_digits (UCI "Optical Recognition of Handwritten Digits", 1,797 images of
8 x 8 pixels with integer values 0..16, 10 classes). The whole set lives in memory as one tensor;
`__getitem__` only indexes it and applies the transform.

Representation: an image is a float32 tensor 1 x 8 x 8 scaled to [0, 1] (raw value / 16). With
`transform=None` items carry that tensor unchanged (what `augment_digits_batch` expects); the transforms
of isl.data.transforms take it and return a normalised 1 x 8 x 8 tensor.

Split: a fixed, seedable, stratified train / test split (scikit-learn's `train_test_split` with
`stratify=labels`); with the defaults (test_fraction 0.2, split_seed 0) 1,437 train and 360 test images.
Within a split the images keep the order of load_digits (`source_indices` maps back to it).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

DIGITS_SPLITS = ("train", "test", "all")


def digits_split_indices(test_fraction: float = 0.2, split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of the 1,797 digits -> (train positions, test positions), each sorted, int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = load_digits().target
    train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels,
                                   random_state=split_seed)
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


class DigitsDataset(Dataset):
    """scikit-learn digits as (image 1 x 8 x 8 float in [0, 1] -> transform, target, index).

    Args:
        split: "train", "test" or "all" (all 1,797 images in load_digits order).
        transform: callable on a 1 x 8 x 8 float tensor, or None.
        test_fraction, split_seed: the stratified split (same arguments give the same split).
    """

    def __init__(self, split: str = "train", transform: Callable | None = None, *,
                 test_fraction: float = 0.2, split_seed: int = 0) -> None:
        from sklearn.datasets import load_digits

        if split not in DIGITS_SPLITS:
            raise ValueError(f"digits has splits {list(DIGITS_SPLITS)}, got {split!r}")
        bunch = load_digits()
        if split == "all":
            positions = np.arange(len(bunch.target), dtype=np.int64)
        else:
            train, test = digits_split_indices(test_fraction, split_seed)
            positions = train if split == "train" else test
        self.split = split
        self.transform = transform
        self.source_indices = torch.from_numpy(positions)                                  # N
        images = torch.from_numpy(bunch.images[positions]).to(torch.float32) / 16.0
        self.images = images.unsqueeze(1).contiguous()                                     # N x 1 x 8 x 8
        self.targets = torch.from_numpy(bunch.target[positions]).to(torch.int64)           # N
        self.classes = [str(c) for c in bunch.target_names]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = self.images[index]                                                         # 1 x 8 x 8
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index]), index

    def all_targets(self) -> torch.Tensor:
        """targets: N int64."""
        return self.targets.clone()

    def __repr__(self) -> str:
        return f"DigitsDataset(split={self.split!r}, n={len(self)}, transform={self.transform!r})"
