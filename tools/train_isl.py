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

from isl.checkpoint import CheckpointError  # noqa: E402
from isl.cli import run_cli  # noqa: E402
from isl.config import load_config  # noqa: E402
from isl.rundir import RunDir  # noqa: E402
from isl.train import run_isl  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", default="digits.yaml", help="experiment yaml: a path or a name in configs/")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="dotted overrides, e.g. isl.gan.alpha=2.0 seed=1")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="auto = the newest run of this experiment; PATH = a checkpoint or run directory")
    p.add_argument("--data-root", default=None, help="data folder (else $ISL_DATA_ROOT or ./data)")
    p.add_argument("--output-root", default=None, help="runs folder (else $ISL_OUTPUT_ROOT or ./runs)")
    return p


def find_resume(cfg, resume: str) -> tuple[Path, Path]:
    """(run directory, checkpoint) for --resume auto|PATH."""
    if resume == "auto":
        runs = sorted(p for p in (Path(cfg.output_root) / cfg.experiment).glob("*/checkpoints/last.pt"))
        if not runs:
            raise CheckpointError(f"--resume auto found no checkpoint under {Path(cfg.output_root) / cfg.experiment}"
                                  f"/*/checkpoints/last.pt; start without --resume")
        ckpt = max(runs, key=lambda p: p.stat().st_mtime)
    else:
        ckpt = Path(resume)
        if ckpt.is_dir():
            ckpt = ckpt / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            raise CheckpointError(f"--resume {resume}: no checkpoint at {ckpt}; give a checkpoints/last.pt file, "
                                  f"its run directory, or 'auto'")
    return ckpt.parent.parent, ckpt


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
                      for k in ("knn_acc", "nmi", "acc", "ari", "pairs", "pair_precision",
                                               "wall_time_s")}))
    print(f"run directory: {run.path}")
    return results


if __name__ == "__main__":
    run_cli(main)
