"""Config -> objects: data sets, loaders, encoder, device. The only place config meets constructors."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .config import Config
from .data import DATASETS, build_dataset, build_transform
from .models import build_encoder


def select_device(name: str = "auto") -> torch.device:
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
    return _dataset(cfg, cfg.data.train_split, transform)


def build_eval_loaders(cfg: Config) -> tuple[DataLoader, DataLoader]:
    """(kNN bank split, query split) with the test transform, in order, for feature extraction."""
    test_tf = build_transform(cfg.data.name, train=False)
    bank = _dataset(cfg, cfg.data.knn_split, test_tf)
    queries = _dataset(cfg, cfg.data.test_split, test_tf)
    kwargs = dict(batch_size=cfg.eval.batch_size, shuffle=False, num_workers=cfg.data.num_workers)
    return DataLoader(bank, **kwargs), DataLoader(queries, **kwargs)
