"""Train a supervised metric-learning baseline (any loss in baselines.registry.LOSSES) with labels.

Installed (`pip install -e .`): `isl-baseline ...`; from a checkout: `python tools/train_baseline.py ...`.

    python tools/train_baseline.py --cfg baselines/triplet.yaml
    python tools/train_baseline.py --cfg baselines/magnet.yaml --set baseline.epochs=10 seed=1
    python tools/train_baseline.py --cfg baselines/triplet.yaml --set baseline.loss=circle baseline.loss_kwargs={}
    python tools/train_baseline.py --cfg baselines/triplet.yaml --resume auto
    python tools/train_baseline.py --cfg baselines/multi_similarity.yaml --data cifar10   # -> cifar10_baseline_...

Same encoders, data sets, evaluation (kNN, NMI, ACC, ARI) and run directories as tools/train_isl.py:
runs/<experiment>/<timestamp>/ with config.yaml, metrics.jsonl, results.json, TensorBoard events and
checkpoints/last.pt (readable by tools/evaluate.py and tools/probe.py).
"""
from __future__ import annotations

import argparse

from baselines.trainer import check_baseline_config, run_baseline
from isl.cli import (add_data_argument, add_run_arguments, apply_output_arguments, baseline_data_base,
                     run_cli, train_in_run)
from isl.config import load_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, default_cfg="baselines/triplet.yaml")
    add_data_argument(p)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    apply_output_arguments(args)
    cfg = load_config(args.cfg, args.overrides, args.data_root, args.output_root,
                      base=baseline_data_base(args.data))
    check_baseline_config(cfg)  # loss, miner, sampler and their arguments, before any data is read
    return train_in_run(cfg, args, run_baseline,
                        ("loss", "knn_acc", "linear_acc", "nmi", "acc", "ari", "wall_time_s"))


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
