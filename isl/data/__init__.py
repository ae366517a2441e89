"""Data sets (digits, Fashion-MNIST, CIFAR-10/100, STL-10, SVHN) returning (image, target, index), and their transforms.

See registry.py (names, facts, builder), digits.py, vision.py (torchvision wrappers), transforms.py, image_augment.py
(batched RGB augmentation), tensor_images.py (uint8 images for it).
"""
from isl.data.registry import (DATASETS, DatasetInfo, build_dataset, dataset_info, dataset_targets,
                               num_classes, resolve_data_root)
from isl.data.transforms import (DIGIT_PRESETS, IMAGE_PRESETS, TENSOR_PRESETS, MultiView, augment_digits_batch,
                                 augment_tensor_batch, augment_views, build_transform)
from isl.data.vision import DatasetCorruptedError, DatasetNotFoundError

__all__ = [
    "DATASETS", "DIGIT_PRESETS", "DatasetCorruptedError", "DatasetInfo", "DatasetNotFoundError", "IMAGE_PRESETS",
    "MultiView", "TENSOR_PRESETS", "augment_digits_batch", "augment_tensor_batch", "augment_views", "build_dataset",
    "build_transform", "dataset_info", "dataset_targets", "num_classes", "resolve_data_root",
]
