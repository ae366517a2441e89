"""Config -> objects: data sets, loaders, encoder, device. The only place config meets constructors."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .config import Config, ConfigError, check_device
from .data import DATASETS, build_dataset, build_transform
from .models import build_encoder


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


def build_train_set(cfg: Config, transform=None):
    """The training split with the train transform (or `transform`), items (image, target, index)."""
    if transform is None:
        transform = build_transform(cfg.data.name, train=True, preset=cfg.data.augment)
    train = _dataset(cfg, cfg.data.train_split, transform)
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
    kwargs = dict(batch_size=cfg.eval.batch_size, shuffle=False, num_workers=cfg.data.num_workers)
    return DataLoader(bank, **kwargs), DataLoader(queries, **kwargs)
