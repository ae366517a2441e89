"""Config -> objects: data sets, loaders, encoder, device. The only place config meets constructors."""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader

from .config import Config, ConfigError, check_device
from .data import DATASETS, build_dataset, build_transform
from .data.tensor_images import TensorImages
from .data.transforms import batched_augment
from .models import build_encoder

MAX_AUTO_WORKERS = 8  # data.num_workers=-1: more PIL workers than this rarely feed one GPU faster


def select_device(name: str = "auto") -> torch.device:
    """auto -> cuda when present, else cpu; a device this machine lacks is a ConfigError."""
    check_device(name, "device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_encoder_from_config(cfg: Config) -> torch.nn.Module:
    info = DATASETS[cfg.data.name]
    return build_encoder(cfg.model.arch, cfg.model.low_dim, info.in_channels)


def _dataset(cfg: Config, split: str, transform):
    d = cfg.data
    return build_dataset(d.name, split, d.root, transform, d.download,
                         test_fraction=d.test_fraction, split_seed=d.split_seed,
                         verify_checksums=d.verify_checksums, image_size=d.image_size)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a Slurm allocation), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def loader_workers(cfg: Config, per_image: bool) -> int:
    """data.num_workers, with -1 (auto) resolved here and only here: the available cores (at most MAX_AUTO_WORKERS,
    shared by torchrun's ranks on a node) for a loader that augments image by image (`per_image`: the pil backend's
    train loader), else 0, in-process: collating raw or test-transformed images costs little per item."""
    if cfg.data.num_workers >= 0:
        return cfg.data.num_workers
    if not per_image:
        return 0
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(available_cores() // ranks, MAX_AUTO_WORKERS))


def uses_batched_augment(cfg: Config) -> bool:
    """Whether training draws its views on whole batches (data.augment_backend, isl.data.transforms.batched_augment)."""
    return batched_augment(cfg.data.name, cfg.data.augment_backend)


def build_raw_train_set(cfg: Config):
    """The training split as raw images for the batched augmentation (isl.data.transforms.augment_views), items
    (image, target, index): digits / Fashion-MNIST 1 x S x S float in [0, 1]; RGB data sets C x H x W uint8."""
    if DATASETS[cfg.data.name].in_memory:
        return build_train_set(cfg, transform=_identity)
    return _check_batch(cfg, TensorImages.from_dataset(_dataset(cfg, cfg.data.train_split, None)))


def _identity(x):
    return x


def build_train_set(cfg: Config, transform=None):
    """The training split with the train transform (or `transform`), items (image, target, index)."""
    if transform is None:
        transform = build_transform(cfg.data.name, train=True, preset=cfg.data.augment)
    return _check_batch(cfg, _dataset(cfg, cfg.data.train_split, transform))


def _check_batch(cfg: Config, train):
    if cfg.train.batch_size > len(train):
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is larger than the training set ({len(train)} "
                          f"images of {cfg.data.name}/{cfg.data.train_split}); lower train.batch_size")
    return train


def build_eval_loaders(cfg: Config) -> tuple[DataLoader, DataLoader]:
    """(kNN bank split, query split) with the test transform, in order, for feature extraction."""
    test_tf = build_transform(cfg.data.name, train=False)
    bank = _dataset(cfg, cfg.data.knn_split, test_tf)
    if cfg.eval.knn_k > len(bank):
        raise ConfigError(f"eval.knn_k={cfg.eval.knn_k} is larger than the kNN bank ({len(bank)} images of "
                          f"{cfg.data.name}/{cfg.data.knn_split}); lower eval.knn_k")
    queries = _dataset(cfg, cfg.data.test_split, test_tf)
    kwargs = dict(batch_size=cfg.eval.batch_size, shuffle=False, num_workers=loader_workers(cfg, per_image=False))
    return DataLoader(bank, **kwargs), DataLoader(queries, **kwargs)
