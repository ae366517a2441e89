"""Fashion-MNIST (Xiao et al. 2017, arXiv 1708.07747) through torchvision's FashionMNIST class, in memory.

60,000 train + 10,000 test grayscale images of 28 x 28 garments, 10 classes. torchvision's reader parses the
original IDX files from `<data root>/FashionMNIST/raw/` (unpacked: `train-images-idx3-ubyte`, ...). Like the
digits, the whole split lives in memory as one float tensor (N x 1 x S x S in [0, 1]) so that training can
augment a whole batch at once (isl.data.transforms.augment_tensor_batch); `image_size` resizes every image
once at load (antialiased bilinear), e.g. 16 for the CPU config.

Getting the files without internet: Debian's package `dataset-fashion-mnist` installs the original gzipped IDX
files in /usr/share/datasets/fashion-mnist. `prepare_fashion_mnist(root)` (or `python3 tools/prepare_data.py
fashion_mnist`) unpacks them into `<root>/FashionMNIST/raw/`; the data set also does so by itself when the data
root lacks the files and the package's folder exists. With internet, `--set data.download=true` lets torchvision
fetch them.

Checksums: torchvision knows the md5 of the upstream .gz files, which Debian recompressed; we check the md5 of
the unpacked IDX files instead (RAW_MD5, measured on the Debian package's files; verify_checksums=False keeps
only the IDX format checks of torchvision's reader).
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision import datasets as tvd

from isl.data.vision import DatasetCorruptedError, DatasetNotFoundError

log = logging.getLogger("isl")

FOLDER = "FashionMNIST"                                  # torchvision's <root>/FashionMNIST/raw
PACKAGE_DIRS = ("/usr/share/datasets/fashion-mnist",)    # Debian's dataset-fashion-mnist
RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
NATIVE_SIZE = 28
HOW_TO_GET = ("Get it with `apt-get install dataset-fashion-mnist` then `python3 tools/prepare_data.py "
              "fashion_mnist` (or `--from DIR` for a folder holding the four IDX files, gzipped or not), or with "
              "`--set data.download=true` where the internet is reachable.")


def raw_folder(root: str | Path) -> Path:
    return Path(root).expanduser() / FOLDER / "raw"


def _missing(root: str | Path) -> list[Path]:
    folder = raw_folder(root)
    return [folder / name for name in RAW_MD5 if not (folder / name).is_file()]


def find_source() -> Path | None:
    """The first folder of PACKAGE_DIRS holding the four gzipped IDX files, else None."""
    for d in PACKAGE_DIRS:
        if all((Path(d) / f"{name}.gz").is_file() for name in RAW_MD5):
            return Path(d)
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_fashion_mnist(root: str | Path, source: str | Path | None = None, verify_checksums: bool = True) -> Path:
    """Unpack the four IDX files from `source` (default: the Debian package's folder) into <root>/FashionMNIST/raw.

    Files already present are kept. Each file is written to a temporary name and renamed, so an interrupted
    copy leaves nothing half-written. Returns the raw folder. Raises DatasetNotFoundError when the source lacks
    a file, DatasetCorruptedError when an unpacked file's md5 differs from RAW_MD5 (verify_checksums).
    """
    src = Path(source).expanduser() if source else find_source()
    dest = raw_folder(root)
    if src is None:
        raise DatasetNotFoundError(f"Fashion-MNIST: no source folder (looked in {', '.join(PACKAGE_DIRS)}). "
                                   + HOW_TO_GET)
    dest.mkdir(parents=True, exist_ok=True)
    for name, md5 in RAW_MD5.items():
        target = dest / name
        if not target.is_file():
            plain, packed = src / name, src / f"{name}.gz"
            if not plain.is_file() and not packed.is_file():
                raise DatasetNotFoundError(f"Fashion-MNIST: {src} holds neither {name} nor {name}.gz. " + HOW_TO_GET)
            tmp = target.with_name(f".{name}.tmp")
            with (open(plain, "rb") if plain.is_file() else gzip.open(packed, "rb")) as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.replace(tmp, target)
        if verify_checksums and _md5(target) != md5:
            raise DatasetCorruptedError(
                f"Fashion-MNIST: {target} has md5 {_md5(target)}, expected {md5}. Delete {dest} and prepare it "
                "again, or pass --set data.verify_checksums=false for a copy you trust.")
    return dest


class FashionMNISTIndexed(tvd.FashionMNIST):
    """torchvision FashionMNIST whose items are (image 1 x S x S float in [0, 1] -> transform, target, index).

    Args:
        root: data root (the files live in <root>/FashionMNIST/raw). train: the 60k train or the 10k test split.
        transform: callable on a 1 x S x S tensor, or None. download: let torchvision fetch missing files.
        verify_checksums: md5 of the unpacked IDX files (RAW_MD5). image_size: S (0 or 28 = native).
    """

    def __init__(self, root: str | Path, train: bool = True, transform: Callable | None = None,
                 download: bool = False, verify_checksums: bool = True, image_size: int = 0,
                 name: str = "fashion_mnist") -> None:
        root = Path(root).expanduser()
        if _missing(root) and not download:
            if find_source() is None:
                listed = ", ".join(str(p.absolute()) for p in _missing(root))
                raise DatasetNotFoundError(f"Data set '{name}' not found: looked for {listed} and in "
                                           f"{', '.join(PACKAGE_DIRS)}. " + HOW_TO_GET)
            log.info("Fashion-MNIST: unpacking %s into %s", find_source(), raw_folder(root))
            prepare_fashion_mnist(root, verify_checksums=verify_checksums)
        super().__init__(str(root), train=train, transform=None, download=download)
        if verify_checksums:
            for file_name in self._split_files():
                path = raw_folder(root) / file_name
                if _md5(path) != RAW_MD5[file_name]:
                    raise DatasetCorruptedError(
                        f"Data set '{name}': {path} has md5 {_md5(path)}, expected {RAW_MD5[file_name]}. Delete "
                        f"{raw_folder(root)} and prepare it again, or pass --set data.verify_checksums=false.")
        self.transform = transform
        self.image_size = int(image_size) or NATIVE_SIZE
        images = self.data.unsqueeze(1).to(torch.float32).div_(255.0)             # N x 1 x 28 x 28
        if self.image_size != images.shape[-1]:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   antialias=True, align_corners=False).clamp_(0.0, 1.0)  # N x 1 x S x S
        self.images = images.contiguous()
        self.targets = self.targets.to(torch.int64)                               # N

    @property
    def raw_folder(self) -> str:  # torchvision derives it from the class name; keep torchvision's layout
        return os.path.join(self.root, FOLDER, "raw")

    @property
    def processed_folder(self) -> str:
        return os.path.join(self.root, FOLDER, "processed")

    def _split_files(self) -> list[str]:
        prefix = "train" if self.train else "t10k"
        return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = self.images[index]                                                 # 1 x S x S
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index]), index

    def all_targets(self) -> torch.Tensor:
        """targets: N int64."""
        return self.targets.clone()
