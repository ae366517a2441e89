"""Tiny data sets written in the real on-disk formats, so tests run torchvision's real readers offline.

Formats (as the data sets' own pages describe them):
- CIFAR-10 python version: `cifar-10-batches-py/data_batch_1..5`, `test_batch` are pickled dicts with
  `data` (N x 3072 uint8: the red plane row-major, then green, then blue), `labels`, `filenames`,
  `batch_label`; `batches.meta` holds `label_names`.
- CIFAR-100 python version: `cifar-100-python/train`, `test` with `data`, `fine_labels`, `coarse_labels`,
  `filenames`, `batch_label`; `meta` holds `fine_label_names` and `coarse_label_names`.
- STL-10 binary: `stl10_binary/{train,test,unlabeled}_X.bin` are uint8 images 3 x 96 x 96, each channel
  stored column-major; `{train,test}_y.bin` uint8 labels 1..10; `class_names.txt`; `fold_indices.txt`
  (10 lines of 0-based train indices).
- SVHN cropped digits: `<split>_32x32.mat` with X (32 x 32 x 3 x N uint8) and y (N x 1, label 10 = digit 0);
  build_dataset reads them from `<root>/svhn/`.
- Fashion-MNIST IDX (as MNIST's page describes it): big-endian int32 magic 0x00000803 then N, 28, 28 and N x 28
  x 28 uint8 pixels (`{train,t10k}-images-idx3-ubyte`); magic 0x00000801 then N and N uint8 labels
  (`{train,t10k}-labels-idx1-ubyte`); upstream ships them gzipped.

Each writer returns what the reader should give back: images as N x H x W x 3 uint8 (= np.asarray of the
PIL image an item carries) and labels as the loader reports them (0-based; -1 for unlabeled).
The files are not the real ones, so build the data sets with verify_checksums=False.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class FakeSplit:
    images: np.ndarray                       # N x H x W x 3 uint8
    labels: np.ndarray                       # N int64, as the loader reports them
    coarse_labels: np.ndarray | None = None  # CIFAR-100 only


def _images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """N x 32 x 32 x 3 -> N x 3072 (R plane, G plane, B plane; each row-major)."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_fake_cifar10(root: str | Path, n_per_batch: int = 3, n_test: int = 4, seed: int = 0) -> dict[str, FakeSplit]:
    """Write cifar-10-batches-py/ under root; returns {"train": ..., "test": ...}."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = []
    for b in range(1, 6):
        images, labels = _images(rng, n_per_batch, 32), rng.integers(0, 10, n_per_batch)
        _pickle(folder / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of 5", "labels": labels.tolist(), "data": _cifar_rows(images),
            "filenames": [f"img_{b}_{i}.png" for i in range(n_per_batch)]})
        batches.append((images, labels))
    test_images, test_labels = _images(rng, n_test, 32), rng.integers(0, 10, n_test)
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(),
                                    "data": _cifar_rows(test_images),
                                    "filenames": [f"test_{i}.png" for i in range(n_test)]})
    _pickle(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)],
                                      "num_cases_per_batch": n_per_batch, "num_vis": 3072})
    train = FakeSplit(np.concatenate([i for i, _ in batches]), np.concatenate([l for _, l in batches]))
    return {"train": train, "test": FakeSplit(test_images, test_labels)}


def write_fake_cifar100(root: str | Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict[str, FakeSplit]:
    """Write cifar-100-python/ under root (coarse label = fine % 20 here); returns {"train", "test"}."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, fine = _images(rng, n, 32), rng.integers(0, 100, n)
        coarse = fine % 20
        _pickle(folder / split, {"filenames": [f"{split}_{i}.png" for i in range(n)], "batch_label": split,
                                 "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist(),
                                 "data": _cifar_rows(images)})
        out[split] = FakeSplit(images, fine, coarse)
    _pickle(folder / "meta", {"fine_label_names": [f"fine{c}" for c in range(100)],
                              "coarse_label_names": [f"coarse{c}" for c in range(20)]})
    return out


def _stl_bytes(images: np.ndarray) -> bytes:
    """N x 96 x 96 x 3 -> each image as 3 channels, each 96 x 96 column-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


def write_fake_stl10(root: str | Path, n_train: int = 6, n_test: int = 4, n_unlabeled: int = 5,
                     seed: int = 0) -> dict[str, FakeSplit]:
    """Write stl10_binary/ under root; returns {"train", "test", "unlabeled"}."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        images = _images(rng, n, 96)
        (folder / f"{split}_X.bin").write_bytes(_stl_bytes(images))
        if split == "unlabeled":
            out[split] = FakeSplit(images, np.full(n, -1, dtype=np.int64))
            continue
        labels = rng.integers(0, 10, n)
        (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        out[split] = FakeSplit(images, labels)
    (folder / "class_names.txt").write_text("\n".join(f"class{c}" for c in range(10)) + "\n")
    folds = [" ".join(str(i) for i in rng.permutation(n_train)[: max(1, n_train // 2)]) for _ in range(10)]
    (folder / "fold_indices.txt").write_text("\n".join(folds) + "\n")
    return out


def write_fake_svhn(root: str | Path, n_train: int = 7, n_test: int = 5, seed: int = 0,
                    subdir: str = "svhn") -> dict[str, FakeSplit]:
    """Write <root>/<subdir>/{train,test}_32x32.mat; digit 0 is stored as label 10. Returns {"train", "test"}."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = Path(root) / subdir
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, digits = _images(rng, n, 32), rng.integers(0, 10, n)
        digits[0] = 0                                  # make sure the 10 -> 0 mapping is exercised
        on_disk = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        savemat(folder / f"{split}_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": on_disk})
        out[split] = FakeSplit(images, digits)
    return out


def write_all_fake(root: str | Path) -> dict[str, dict[str, FakeSplit]]:
    """Every fake data set under one root, keyed like isl.data.DATASETS (cifar100 serves cifar100_20 too)."""
    return {"cifar10": write_fake_cifar10(root), "cifar100": write_fake_cifar100(root),
            "stl10": write_fake_stl10(root), "svhn": write_fake_svhn(root)}


def write_fake_idx(folder: str | Path, n_train: int = 12, n_test: int = 5, seed: int = 0, gzipped: bool = False,
                   size: int = 28) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four Fashion-MNIST IDX files into folder (gzipped: `<name>.gz`, as the Debian package ships
    them). Returns {"train": (images N x size x size uint8, labels N), "test": ...}."""
    import gzip

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        blobs = {f"{prefix}-images-idx3-ubyte": np.array([0x803, n, size, size], ">i4").tobytes() + images.tobytes(),
                 f"{prefix}-labels-idx1-ubyte": np.array([0x801, n], ">i4").tobytes() + labels.tobytes()}
        for name, blob in blobs.items():
            if gzipped:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(blob)
            else:
                (folder / name).write_bytes(blob)
        out[split] = (images, labels.astype(np.int64))
    return out
