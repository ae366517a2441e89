"""Which data sets exist, what they look like, and one builder from config names to Dataset objects.

Every data set's items are (image, target, index) with index = position in that data set (0..len-1),
the row of the sample in the ISL memory bank. Unlabeled images (STL-10) have target -1.

Normalisation constants: CIFAR-10's are the ones of the reference ISL / instance-discrimination code
(its "std" is not the per-channel pixel std, kept for fidelity); CIFAR-100 uses the same transform
as CIFAR-10, as the reference does; STL-10 and SVHN use the per-channel values in common use (e.g.
lightning-bolts' dataset_normalizations), not recomputed here; digits' were computed over all 1,797
images scaled to [0, 1] (tests/test_data_digits.py recomputes them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from isl.data import fashion_mnist
from isl.data.digits import DigitsDataset
from isl.data.vision import CIFAR10Indexed, CIFAR100Indexed, STL10Indexed, SVHNIndexed

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a data set (no file access)."""

    name: str
    num_classes: int
    image_size: int                  # images are image_size x image_size
    in_channels: int
    mean: tuple[float, ...]          # per-channel normalisation of the [0, 1] image
    std: tuple[float, ...]
    train_split: str                 # the split unsupervised training runs on
    test_split: str                  # the kNN / clustering queries
    knn_split: str                   # the labelled split used as the kNN bank
    splits: tuple[str, ...]          # every split build_dataset accepts
    folder: str                      # folder under the data root ("" for the bundled digits)
    url: str                         # where the files come from
    in_memory: bool = False          # items are float tensors 1 x S x S in [0, 1], augmented a batch at once


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", 10, 8, 1, (0.3053,), (0.3760,), "train", "test", "train",
                          ("train", "test", "all"), "", "bundled with scikit-learn (load_digits)", in_memory=True),
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, 28, 1, (0.2860,), (0.3530,), "train", "test", "train",
                                 ("train", "test"), fashion_mnist.FOLDER,
                                 "Debian package dataset-fashion-mnist, or torchvision's FashionMNIST mirrors",
                                 in_memory=True),
    "cifar10": DatasetInfo("cifar10", 10, 32, 3, CIFAR_MEAN, CIFAR_STD, "train", "test", "train",
                           ("train", "test"), CIFAR10Indexed.base_folder, CIFAR10Indexed.url),
    "cifar100": DatasetInfo("cifar100", 100, 32, 3, CIFAR_MEAN, CIFAR_STD, "train", "test", "train",
                            ("train", "test"), CIFAR100Indexed.base_folder, CIFAR100Indexed.url),
    "cifar100_20": DatasetInfo("cifar100_20", 20, 32, 3, CIFAR_MEAN, CIFAR_STD, "train", "test", "train",
                               ("train", "test"), CIFAR100Indexed.base_folder, CIFAR100Indexed.url),
    "stl10": DatasetInfo("stl10", 10, 96, 3, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713),
                         "train+unlabeled", "test", "train", ("train", "unlabeled", "train+unlabeled", "test"),
                         STL10Indexed.base_folder, STL10Indexed.url),
    "svhn": DatasetInfo("svhn", 10, 32, 3, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                        "train", "test", "train", ("train", "test", "extra"), SVHNIndexed.folder_name,
                        "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat, test_32x32.mat, extra_32x32.mat)"),
}


def dataset_info(name: str) -> DatasetInfo:
    """DATASETS[name] with an error listing the choices."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def num_classes(name: str) -> int:
    """Number of classes of a data set (20 for cifar100_20)."""
    return dataset_info(name).num_classes


def resolve_data_root(root: str | Path | None) -> Path:
    """root if given, else $ISL_DATA_ROOT, else ./data."""
    chosen = str(root) if root else (os.environ.get("ISL_DATA_ROOT", "") or "./data")
    return Path(chosen).expanduser()


def build_dataset(name: str, split: str, root: str | Path | None = None, transform: Callable | None = None,
                  download: bool = False, *, test_fraction: float = 0.2, split_seed: int = 0,
                  verify_checksums: bool = True, image_size: int = 0) -> Dataset:
    """Build a data set whose items are (image, target, index).

    Args:
        name: one of DATASETS. split: one of DATASETS[name].splits.
        root: data root (None or "" -> $ISL_DATA_ROOT or ./data); ignored by digits.
        transform: applied to the image (PIL for torchvision data sets, 1 x 8 x 8 float tensor for digits).
        download: let torchvision download missing files (digits need none).
        test_fraction, split_seed: the stratified digits split.
        verify_checksums: keep torchvision's md5 check (False: only check that the files exist).
        image_size: in-memory data sets other than digits only: resize every image to this side once at
            load (0 = native size).
    Raises:
        DatasetNotFoundError: files missing and download is False; the message says where and how to get them.
    """
    info = dataset_info(name)
    if split not in info.splits:
        raise ValueError(f"{name} has splits {list(info.splits)}, got {split!r}")
    if name == "digits":
        return DigitsDataset(split, transform, test_fraction=test_fraction, split_seed=split_seed)
    data_root = resolve_data_root(root)
    if name == "fashion_mnist":
        return fashion_mnist.FashionMNISTIndexed(data_root, train=split == "train", transform=transform,
                                                 download=download, verify_checksums=verify_checksums,
                                                 image_size=image_size, name=name)
    common = dict(transform=transform, download=download, verify_checksums=verify_checksums, name=name)
    if name == "cifar10":
        return CIFAR10Indexed(data_root, train=split == "train", **common)
    if name in ("cifar100", "cifar100_20"):
        label_type = "coarse" if name == "cifar100_20" else "fine"
        return CIFAR100Indexed(data_root, train=split == "train", label_type=label_type, **common)
    if name == "stl10":
        return STL10Indexed(data_root, split=split, **common)
    if name == "svhn":
        return SVHNIndexed(data_root, split=split, **common)
    raise ValueError(f"build_dataset has no branch for data set {name!r}; add one next to the others")


def dataset_targets(ds: Dataset) -> torch.Tensor:
    """All targets of a data set as an int64 tensor (N), without loading images.

    Works on the data sets of build_dataset and on Subset / ConcatDataset of them.
    """
    if isinstance(ds, Subset):
        return dataset_targets(ds.dataset)[torch.as_tensor(ds.indices, dtype=torch.int64)]
    if isinstance(ds, ConcatDataset):
        return torch.cat([dataset_targets(d) for d in ds.datasets])
    if hasattr(ds, "all_targets"):
        return ds.all_targets()
    for attr in ("targets", "labels"):
        if hasattr(ds, attr):
            return torch.as_tensor(getattr(ds, attr), dtype=torch.int64)
    raise TypeError(f"cannot read targets of {type(ds).__name__}: build it with isl.data.build_dataset, "
                    "or give it an `all_targets()` method or a `targets` attribute")
