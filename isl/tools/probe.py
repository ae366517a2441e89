"""Probe a trained encoder with supervised metric-learning losses: a measure of how well its frozen features
cluster by the true labels (lower = better separated), next to the same losses on random unit vectors.

Installed (`pip install -e .`): `isl-probe ...`; from a checkout: `python tools/probe.py ...`.

    python tools/probe.py --ckpt runs/digits_isl/<stamp>/checkpoints/last.pt --losses triplet,histogram,magnet
    python tools/probe.py --ckpt PATH --losses all --split train --batches 50

The checkpoint's saved config rebuilds the encoder (any checkpoint of this project: ISL or a baseline). The
chosen split is embedded with the test transform; each loss is computed, without training anything, on
--batches m-per-class batches (--batch-size samples, --m per class, fixed seed) and averaged. Losses with
learnable proxies get their proxies initialised at the class means of the probed features (the best a
proxy could start from); the hierarchical triplet loss builds its class tree from the probed features.
The "random" column is the same computation on random unit vectors with the same labels and batches.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from baselines.registry import LOSSES, build_loss, unknown_name_error
from baselines.samplers import MPerClassBatchSampler
from isl.builders import build_encoder_from_config, loader_workers, select_device
from isl.checkpoint import load_module_state, load_saved_run
from isl.cli import run_cli
from isl.config import ConfigError
from isl.data import DATASETS, build_dataset, build_transform
from isl.eval import extract_features


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint (.pt) written by train_isl.py or train_baseline.py")
    p.add_argument("--losses", default="all", help="comma-separated names from baselines.registry.LOSSES, or all")
    p.add_argument("--split", default=None, help="data split to embed (default: the config's test split)")
    p.add_argument("--batches", type=int, default=20, help="m-per-class batches to average over")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--m", type=int, default=16, help="samples per class in a batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the batches and of the random reference")
    p.add_argument("--data-root", default=None, help="data folder (else the checkpoint's / $ISL_DATA_ROOT)")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: the config's)")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    return p


def parse_losses(text: str) -> list[str]:
    names = sorted(LOSSES) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--losses {text!r} names no loss; give comma-separated names from "
                          "baselines.registry.LOSSES, or all")
    for name in names:
        if name not in LOSSES:
            raise ConfigError(str(unknown_name_error("loss", name, LOSSES)))
    return names


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean feature of each class (num_classes x d; zero rows for absent classes)."""
    onehot = F.one_hot(labels, num_classes).to(features.dtype)  # N x C
    return (onehot.t() @ features) / onehot.sum(0).clamp(min=1).unsqueeze(1)


@torch.no_grad()
def probe_losses(features: torch.Tensor, labels: torch.Tensor, names: list[str], batches: list[list[int]],
                 num_classes: int) -> dict[str, tuple[float, float]]:
    """{name: (mean, std)} of each loss over the batches of (features N x d, labels N)."""
    out = {}
    for name in names:
        loss = build_loss(name, num_classes=num_classes, embedding_size=features.shape[1]).to(features.device)
        if hasattr(loss, "proxies"):
            loss.proxies.copy_(class_means(features, labels, loss.proxies.shape[0]).to(loss.proxies.dtype))
        if hasattr(loss, "fit_tree"):
            loss.fit_tree(features, labels)
        values = torch.stack([loss(features[idx], labels[idx]).detach().double() for idx in
                              (torch.as_tensor(b, device=features.device) for b in batches)])
        out[name] = (float(values.mean()), float(values.std()) if len(values) > 1 else 0.0)
    return out


def format_table(rows: list[dict]) -> str:
    lines = ["| loss | value (mean +- std) | random unit vectors |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['value']:.4f} +- {r['std']:.4f} | {r['random']:.4f} +- "
                     f"{r['random_std']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    names = parse_losses(args.losses)
    for flag, value, low in (("--batches", args.batches, 1), ("--batch-size", args.batch_size, 2), ("--m", args.m, 1)):
        if value < low:
            raise ConfigError(f"{flag} {value}: must be >= {low}")
    state, cfg = load_saved_run(args.ckpt)
    if args.data_root:
        cfg.data.root = args.data_root
    device = select_device(args.device or cfg.train.device)
    model = build_encoder_from_config(cfg).to(device)
    load_module_state(model, state["model"], "model")
    split = args.split or cfg.data.test_split
    d = cfg.data
    if split not in DATASETS[d.name].splits:
        raise ConfigError(f"--split {split}: {d.name} has the splits {', '.join(DATASETS[d.name].splits)}")
    dataset = build_dataset(d.name, split, d.root, build_transform(d.name, train=False), d.download,
                            test_fraction=d.test_fraction, split_seed=d.split_seed, verify_checksums=d.verify_checksums)
    loader = DataLoader(dataset, batch_size=cfg.eval.batch_size, shuffle=False,
                        num_workers=loader_workers(cfg, per_image=False))
    features, labels, _ = extract_features(model, loader, device)
    keep = labels >= 0  # unlabelled images (STL-10) have no class
    features, labels = features[keep].to(device), labels[keep].to(device)
    num_classes = int(labels.max()) + 1
    try:
        batches = list(MPerClassBatchSampler(labels.cpu(), args.m, args.batch_size, num_batches=args.batches,
                                             seed=args.seed))
    except ValueError as err:
        raise ConfigError(f"--m {args.m} / --batch-size {args.batch_size} on {d.name}/{split}: {err}") from None
    g = torch.Generator().manual_seed(args.seed)
    random_features = F.normalize(torch.randn(features.shape, generator=g), dim=1).to(device)
    trained = probe_losses(features, labels, names, batches, num_classes)
    reference = probe_losses(random_features, labels, names, batches, num_classes)
    rows = [{"loss": n, "value": trained[n][0], "std": trained[n][1], "random": reference[n][0],
             "random_std": reference[n][1]} for n in names]
    print(f"checkpoint {args.ckpt} ({cfg.experiment}), {d.name}/{split}: {len(labels)} images, "
          f"{args.batches} batches of {args.batch_size} ({args.m} per class)")
    print(format_table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return rows


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
