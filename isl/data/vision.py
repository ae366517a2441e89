"""CIFAR-10/100, STL-10 and SVHN through torchvision's own dataset classes, returning (image, target, index).

Sources: torchvision.datasets.CIFAR10 / CIFAR100 / STL10 / SVHN (the pickle, binary and .mat readers used
here are torchvision's); the data sets of Krizhevsky 2009 (CIFAR), Coates et al. 2011 (STL-10) and
Netzer et al. 2011 (SVHN). The subclasses add only:

- the sample's position in the data set as a third item (`index`, used to address the memory bank);
- `all_targets()`: every target as an int64 tensor without decoding an image;
- `image_tensor()`: every image as one uint8 tensor N x C x H x W (isl.data.tensor_images), for the batched
  augmentation;
- CIFAR-100's 20 superclasses (`label_type="coarse"`), read from the pickles' `coarse_labels`, which
  torchvision loads but does not keep;
- a clear `DatasetNotFoundError` naming the missing files and how to get them, and a
  `DatasetCorruptedError` when torchvision's md5 check fails;
- `verify_checksums`: True (default) keeps torchvision's md5 check; False checks only that each file
  exists (for trusted local copies and the tiny fixtures of tests/fake_datasets.py). Only the md5
  comparison is skipped: the files are still read by torchvision's code.

On-disk layout under the data root: `cifar-10-batches-py/`, `cifar-100-python/`, `stl10_binary/` (as
torchvision extracts them) and `svhn/*.mat` (torchvision reads SVHN from the root it is given; we give it
`<root>/svhn` so every data set has its own folder).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torchvision import datasets as tvd

DOWNLOAD_HINT = (
    "To get it: set data.download=true (e.g. `--set data.download=true`), or put the files from {url} "
    "under {where}, or point data.root / the ISL_DATA_ROOT environment variable at an "
    "existing copy."
)


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not where we looked; the message lists the paths and how to get them."""


class DatasetCorruptedError(RuntimeError):
    """A data set's files exist but fail torchvision's md5 check."""


def _missing_error(name: str, folder: Path, missing: list[Path], url: str) -> DatasetNotFoundError:
    folder, missing = folder.absolute(), [p.absolute() for p in missing]
    listed = ", ".join(str(p) for p in missing)
    return DatasetNotFoundError(
        f"Data set '{name}' not found: looked in {folder} and did not find {listed}. "
        + DOWNLOAD_HINT.format(url=f"{url} (extracted)" if url.endswith(".tar.gz") else url, where=folder))


def _strip_md5(file_list: list[list[Any]]) -> list[list[Any]]:
    """[[filename, md5], ...] -> [[filename, None], ...]; torchvision's check_integrity(path, None)
    then checks only that the file exists."""
    return [[entry[0], None] + list(entry[2:]) for entry in file_list]


class _TorchvisionIndexed:
    """Mixin over a torchvision dataset: checks files first, wraps errors, appends the index."""

    ds_name: str = ""
    folder_name: str = ""            # folder under the data root holding the files

    def _required_files(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self, name: str, root: Path, download: bool) -> None:
        folder = root / self.folder_name
        if not download:
            missing = [folder / f for f in self._required_files() if not (folder / f).is_file()]
            if missing:
                raise _missing_error(name, folder, missing, self.url)

    def _corrupted(self, name: str, root: Path, err: RuntimeError) -> DatasetCorruptedError:
        folder = root / self.folder_name
        return DatasetCorruptedError(
            f"Data set '{name}' in {folder}: a file failed torchvision's md5 check ({err}). Delete the "
            f"folder and set data.download=true to fetch {self.url} again, or add --set data.verify_checksums=false "
            "to skip only the md5 comparison for files you trust.")

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        image, target = super().__getitem__(index)  # type: ignore[misc]
        return image, int(target), index

    def image_tensor(self) -> torch.Tensor:
        """images: N x C x H x W uint8, the pixels __getitem__ makes PIL images of (STL-10 and SVHN keep `.data`
        channel-first; shares its memory)."""
        return torch.from_numpy(np.ascontiguousarray(self.data))  # type: ignore[attr-defined]


class CIFAR10Indexed(_TorchvisionIndexed, tvd.CIFAR10):
    """torchvision CIFAR10 whose items are (PIL image 32 x 32, target, index)."""

    folder_name = tvd.CIFAR10.base_folder

    def __init__(self, root: str | Path, train: bool = True, transform: Callable | None = None,
                 download: bool = False, verify_checksums: bool = True, name: str = "cifar10") -> None:
        root = Path(root).expanduser()
        if not verify_checksums:   # instance attributes shadow the class lists torchvision reads
            self.train_list = _strip_md5(type(self).train_list)
            self.test_list = _strip_md5(type(self).test_list)
            self.meta = {**type(self).meta, "md5": None}
        self._prepare(name, root, download)
        try:
            super().__init__(root, train=train, transform=transform, download=download)
        except RuntimeError as err:
            raise self._corrupted(name, root, err) from err

    def _required_files(self) -> list[str]:
        return [f for f, _ in self.train_list + self.test_list] + [self.meta["filename"]]

    def image_tensor(self) -> torch.Tensor:
        """images: N x 3 x 32 x 32 uint8 (torchvision holds CIFAR's `.data` as N x H x W x C)."""
        return torch.from_numpy(self.data).permute(0, 3, 1, 2).contiguous()

    def all_targets(self) -> torch.Tensor:
        """targets: N int64."""
        return torch.as_tensor(np.asarray(self.targets), dtype=torch.int64)


class CIFAR100Indexed(CIFAR10Indexed, tvd.CIFAR100):
    """torchvision CIFAR100 with the 100 fine classes (`label_type="fine"`) or the 20 superclasses
    (`label_type="coarse"`, from the pickles' `coarse_labels` and the meta file's `coarse_label_names`)."""

    folder_name = tvd.CIFAR100.base_folder

    def __init__(self, root: str | Path, train: bool = True, transform: Callable | None = None,
                 download: bool = False, verify_checksums: bool = True, label_type: str = "fine",
                 name: str = "cifar100") -> None:
        if label_type not in ("fine", "coarse"):
            raise ValueError(f"label_type must be 'fine' or 'coarse', got {label_type!r}")
        super().__init__(root, train=train, transform=transform, download=download,
                         verify_checksums=verify_checksums, name=name)
        self.label_type = label_type
        if label_type == "coarse":
            self._use_coarse_labels()

    def _use_coarse_labels(self) -> None:
        # torchvision keeps only fine_labels; read coarse_labels from the same files, in the same order.
        folder = Path(self.root) / self.base_folder
        files = self.train_list if self.train else self.test_list
        coarse: list[int] = []
        for file_name, _ in files:
            with open(folder / file_name, "rb") as f:
                coarse.extend(pickle.load(f, encoding="latin1")["coarse_labels"])
        if len(coarse) != len(self.targets):
            raise DatasetCorruptedError(f"{folder}: {len(coarse)} coarse labels for {len(self.targets)} images")
        with open(folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")["coarse_label_names"]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.fine_targets = self.targets
        self.targets = coarse


class STL10Indexed(_TorchvisionIndexed, tvd.STL10):
    """torchvision STL10 (96 x 96); split in train | unlabeled | train+unlabeled | test; unlabeled targets -1."""

    folder_name = tvd.STL10.base_folder

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 download: bool = False, verify_checksums: bool = True, name: str = "stl10") -> None:
        root = Path(root).expanduser()
        if split not in tvd.STL10.splits:
            raise ValueError(f"stl10 has splits {list(tvd.STL10.splits)}, got {split!r}")
        if not verify_checksums:
            self.train_list = _strip_md5(type(self).train_list)
            self.test_list = _strip_md5(type(self).test_list)
        self._prepare(name, root, download)
        try:
            super().__init__(root, split=split, transform=transform, download=download)
        except RuntimeError as err:
            raise self._corrupted(name, root, err) from err

    def _required_files(self) -> list[str]:
        # torchvision checks all five binaries whatever the split
        return [f for f, _ in self.train_list + self.test_list]

    def all_targets(self) -> torch.Tensor:
        """targets: N int64 (-1 for unlabeled images)."""
        return torch.as_tensor(self.labels.astype(np.int64))


class SVHNIndexed(_TorchvisionIndexed, tvd.SVHN):
    """torchvision SVHN (32 x 32) read from `<root>/svhn/<split>_32x32.mat`; torchvision maps label 10 to 0."""

    folder_name = "svhn"

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 download: bool = False, verify_checksums: bool = True, name: str = "svhn") -> None:
        root = Path(root).expanduser()
        if split not in tvd.SVHN.split_list:
            raise ValueError(f"svhn has splits {list(tvd.SVHN.split_list)}, got {split!r}")
        if not verify_checksums:
            self.split_list = {k: [url, fn, None] for k, (url, fn, _) in type(self).split_list.items()}
        self._split = split
        self.url = self.split_list[split][0]
        self._prepare(name, root, download)
        if download:
            os.makedirs(root / self.folder_name, exist_ok=True)
        try:
            super().__init__(root / self.folder_name, split=split, transform=transform, download=download)
        except RuntimeError as err:
            raise self._corrupted(name, root, err) from err

    def _required_files(self) -> list[str]:
        return [self.split_list[self._split][1]]

    def all_targets(self) -> torch.Tensor:
        """targets: N int64 in 0..9 (digit 0 stored as label 10 on disk)."""
        return torch.as_tensor(self.labels.astype(np.int64))
