"""A data set's images as one uint8 tensor N x C x H x W, for augmentation on whole batches (isl.data.image_augment).

torchvision's CIFAR, STL-10 and SVHN classes already hold their images as one numpy uint8 array (`.data`: CIFAR
N x H x W x C, STL-10 and SVHN N x C x H x W); `image_tensor` (isl.data.vision) returns it channel-first without
decoding an image, and `TensorImages` serves its rows. A DataLoader over it yields (uint8 B x C x H x W, targets,
indices) batches: cheap to collate in the training process (no workers needed) and 4x smaller than float32 to move
to the device, where `augment_views` draws the views.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class TensorImages(Dataset):
    """Items (image C x H x W uint8, target, index) over images N x C x H x W and targets N (int64)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"TensorImages expects uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        if targets.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but targets of shape {tuple(targets.shape)}")
        self.images, self.targets = images.contiguous(), targets.to(torch.int64)

    @classmethod
    def from_dataset(cls, ds) -> TensorImages:
        """The images and targets of a data set with `image_tensor()` and `all_targets()` (isl.data.vision's)."""
        if not hasattr(ds, "image_tensor"):
            raise TypeError(f"{type(ds).__name__} has no image_tensor(): it cannot be augmented a batch at once; "
                            "set data.augment_backend=pil")
        return cls(ds.image_tensor(), ds.all_targets())

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.images[index], int(self.targets[index]), index

    def all_targets(self) -> torch.Tensor:
        """targets: N int64."""
        return self.targets.clone()
