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
                     open_run, run_cli, summary_line)
from isl.config import load_config
from isl.distributed import close_distributed, is_main


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
    run, ckpt = open_run(cfg, args.resume, tensorboard=not args.no_tensorboard)  # rank 0 writes under torchrun
    main_rank = is_main()
    try:
        results = run_baseline(cfg, run, resume=ckpt)
    except BaseException:
        if ckpt is None:
            run.discard_if_unstarted()  # a start that failed before its first checkpoint leaves no folder behind
        raise
    finally:
        run.close()
        close_distributed()
    if not main_rank:
        return results
    print(summary_line(results, ("loss", "knn_acc", "linear_acc", "nmi", "acc", "ari", "wall_time_s")))
    print(f"run directory: {run.path}")
    return results


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
