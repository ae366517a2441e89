"""Evaluate features with the shared protocol: weighted kNN + k-means (NMI / ACC / ARI).

Installed (`pip install -e .`): `isl-eval ...`; from a checkout: `python tools/evaluate.py ...`.

    python tools/evaluate.py --cfg digits.yaml --features raw          # the "k-means on pixels" anchor row
    python tools/evaluate.py --ckpt runs/digits_isl/<stamp>/checkpoints/last.pt

With --ckpt, the config saved in the checkpoint rebuilds the encoder; --cfg/--set then only change the
evaluation settings. Results are printed and written to one JSON file: --out, else <checkpoint>.eval.json
next to the checkpoint, else runs/<experiment>/raw_eval.json (no results.csv is touched). An ISL checkpoint's
mined positive sets are described too: their label precision and coverage (pair_coverage = share of training
images with at least one mined positive; pair_coverage_min_class = the same in the least-covered class).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from isl.builders import build_encoder_from_config, build_eval_loaders, select_device
from isl.checkpoint import load_module_state, load_saved_run
from isl.cli import run_cli
from isl.config import ConfigError, load_config
from isl.eval import extract_features, write_json
from isl.positives import PositiveSets
from isl.training import VAL_METRICS, evaluate_features


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", default=None, help="experiment yaml (path or name in configs/)")
    p.add_argument("--ckpt", default=None, help="checkpoint whose encoder features are evaluated")
    p.add_argument("--features", choices=("encoder", "raw"), default="encoder",
                   help="raw = flattened test-transform pixels (no model)")
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-root", default=None, help="data folder (else $ISL_DATA_ROOT or ./data)")
    p.add_argument("--output-root", default=None, help="runs folder (else $ISL_OUTPUT_ROOT or ./runs)")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: the config's)")
    return p


def raw_features(loader) -> tuple[torch.Tensor, torch.Tensor]:
    feats, labels = [], []
    for images, targets, _ in loader:
        feats.append(images.flatten(1).float())
        labels.append(targets)
    return torch.cat(feats), torch.cat(labels)


def positive_set_stats(state: dict | None, train_labels: torch.Tensor) -> dict:
    """Label precision and coverage of an ISL checkpoint's mined positive sets (nothing for other checkpoints, or
    when the evaluation's train split is not the one the sets index)."""
    saved = (state or {}).get("positives")
    if not saved or saved["indptr"].numel() != train_labels.numel() + 1:
        return {}
    positives = PositiveSets(train_labels.numel())
    positives.load_state_dict(saved)
    return {"pair_precision": positives.pair_precision(train_labels), **positives.coverage(train_labels)}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.ckpt is None and args.features == "encoder":
        raise ConfigError("give --ckpt PATH to evaluate a trained encoder, or --features raw for raw pixels")
    state = None
    if args.ckpt is not None:
        state, cfg = load_saved_run(args.ckpt)
        eval_cfg = load_config(args.cfg, args.overrides, args.data_root, args.output_root) if (
            args.cfg or args.overrides) else None
        if eval_cfg is not None:
            cfg.eval = eval_cfg.eval
        if args.data_root:
            cfg.data.root = args.data_root
    else:
        cfg = load_config(args.cfg, args.overrides, args.data_root, args.output_root)
    device = select_device(args.device or cfg.train.device)
    bank_loader, query_loader = build_eval_loaders(cfg)
    if args.features == "raw":
        (bank_f, bank_y), (query_f, query_y) = raw_features(bank_loader), raw_features(query_loader)
    else:
        model = build_encoder_from_config(cfg).to(device)
        load_module_state(model, state["model"], "model")
        bank_f, bank_y, _ = extract_features(model, bank_loader, device)
        query_f, query_y, _ = extract_features(model, query_loader, device)
    results = evaluate_features(bank_f, bank_y, query_f, query_y, cfg)
    results.update(dataset=cfg.data.name, features=args.features, checkpoint=args.ckpt)
    results.update(positive_set_stats(state, bank_y))
    if args.out:
        out = Path(args.out)
    elif args.ckpt:
        out = Path(args.ckpt).with_suffix(".eval.json")
    else:
        out = Path(cfg.output_root) / cfg.experiment / f"{args.features}_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    shown = ("knn_acc", "linear_acc", "nmi", "acc", "ari", "pair_precision", "pair_coverage", "pair_coverage_min_class",
             "val_size", *VAL_METRICS)
    print(json.dumps({k: results[k] for k in shown if k in results}, indent=None))
    print(f"written to {out}")
    return results


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
