"""Train Instance Similarity Learning (or NPID / knn mining via isl.mining.strategy).

Installed (`pip install -e .`): `isl-train ...`; from a checkout: `python tools/train_isl.py ...`.

    python tools/train_isl.py --cfg digits.yaml
    python tools/train_isl.py --cfg cifar10.yaml --set isl.gan.alpha=2 isl.mining.radius=0.7
    python tools/train_isl.py --cfg digits.yaml --resume auto       # continue the newest run of this experiment

Writes runs/<experiment>/<timestamp>/ (config.yaml, metrics.jsonl, results.json, TensorBoard events,
checkpoints/last.pt) and prints the final kNN accuracy, NMI, ACC and ARI.
"""
from __future__ import annotations

import argparse

from isl.cli import add_run_arguments, apply_output_arguments, run_cli, train_in_run
from isl.config import load_config
from isl.train import run_isl


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, default_cfg="digits.yaml")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    apply_output_arguments(args)
    cfg = load_config(args.cfg, args.overrides, args.data_root, args.output_root)
    return train_in_run(cfg, args, run_isl,
                        ("knn_acc", "linear_acc", "nmi", "acc", "ari", "pairs", "pair_precision", "wall_time_s"))


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
