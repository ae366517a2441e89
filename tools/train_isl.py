"""Train Instance Similarity Learning (or NPID / knn mining via isl.mining.strategy).

    python tools/train_isl.py --cfg digits.yaml
    python tools/train_isl.py --cfg cifar10.yaml --set isl.gan.alpha=2 isl.mining.radius=0.7
    python tools/train_isl.py --cfg digits.yaml --resume auto       # continue the newest run of this experiment

Writes runs/<experiment>/<timestamp>/ (config.yaml, metrics.jsonl, results.json, TensorBoard events,
checkpoints/last.pt) and prints the final kNN accuracy, NMI, ACC and ARI.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from isl.cli import add_run_arguments, find_resume, run_cli  # noqa: E402
from isl.config import load_config  # noqa: E402
from isl.rundir import RunDir  # noqa: E402
from isl.train import run_isl  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, default_cfg="digits.yaml")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.cfg, args.overrides, args.data_root, args.output_root)
    if args.resume:
        run_dir, ckpt = find_resume(cfg, args.resume)
        run = RunDir(run_dir)
    else:
        run, ckpt = RunDir.create(cfg), None
    try:
        results = run_isl(cfg, run, resume=ckpt)
    finally:
        run.close()
    print(json.dumps({k: None if isinstance(results[k], float) and results[k] != results[k] else results[k]
                      for k in ("knn_acc", "linear_acc", "nmi", "acc", "ari", "pairs", "pair_precision",
                                               "wall_time_s")}))
    print(f"run directory: {run.path}")
    return results


if __name__ == "__main__":
    run_cli(main)
