"""Run a grid of experiments (any dotted config keys x seeds), resumably, then tabulate and plot the results.

Installed (`pip install -e .`): `isl-ablate ...`; from a checkout: `python tools/ablate.py ...`.

    python tools/ablate.py --sweep configs/ablations/alpha_r_h.yaml                     # the digits alpha x r x h
    python tools/ablate.py --sweep configs/ablations/digits_comparison.yaml --workers 2  # ISL vs knn vs NPID
    python tools/ablate.py --cfg digits.yaml --grid isl.gan.alpha=0.5,1,2 isl.mining.radius=0.5,0.632 \\
        --seeds 0,1,2 --workers 2 --set train.epochs_first=20 isl.rounds=2

Every (combination, seed) runs the tool (tools/train_isl.py by default) in its own process with
`--output-root <out>/runs/<combination>/seed=<s>`. Running the same command again skips finished runs and
resumes unfinished ones; a crashed run is retried once, then listed as failed (the sweep goes on; exit code 1).
Afterwards <out> holds results.csv / results.md (mean ± std over seeds per combination), runs.csv, PNG line plots
of kNN / NMI / ACC / pair precision against each swept key, heat maps for each pair of keys, summary.json and
logs/. Options: docs/tools.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from isl.cli import run_cli
from isl.experiments.collect import read_run, short_names
from isl.experiments.summary import write_summary
from isl.experiments.sweep import (Sweep, SweepError, execute, expand, finished_results, load_sweep_file,
                                   parse_grid_arg, parse_variants, plan, select_variants, validate)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", default=None, help="sweep yaml (configs/ablations/*.yaml); flags below override it")
    p.add_argument("--cfg", default=None, help="base experiment yaml (path or name in configs/)")
    p.add_argument("--grid", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                   help="swept dotted keys, e.g. isl.gan.alpha=0.5,1,2 isl.mining.strategy=gan,knn,none")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0)")
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="fixed dotted overrides of every run (added to the sweep file's)")
    p.add_argument("--tool", default=None,
                   help="train_isl (default) | train_baseline | path/to/script.py | dotted.module")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default 1, or the sweep file's)")
    p.add_argument("--threads-per-run", type=int, default=0,
                   help="OMP/MKL threads of each run (default: cores / workers when workers > 1)")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which an attempt is killed")
    p.add_argument("--out", default=None,
                   help="sweep folder (default $ISL_OUTPUT_ROOT or ./runs, then ablations/<sweep name>)")
    p.add_argument("--data-root", default=None, help="passed to every run (else $ISL_DATA_ROOT or ./data)")
    p.add_argument("--data", default=None, metavar="NAME",
                   help="with --tool train_baseline: the data set of every run (configs/baselines/datasets/NAME.yaml)")
    p.add_argument("--variants", default=None, metavar="NAME[,NAME]",
                   help="run only these variants of the sweep file, in this order (the tables still gather every "
                        "finished run of the sweep)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")
    p.add_argument("--collect-only", action="store_true", help="only rebuild tables and figures from finished runs")
    p.add_argument("--quiet", action="store_true",
                   help="print only failed runs and the final summary (each run's log is in <out>/logs/ anyway)")
    return p


def build_sweep(args: argparse.Namespace) -> tuple[Sweep, int, float | None]:
    """The Sweep from --sweep and/or the flags (flags win), with workers and timeout."""
    spec = load_sweep_file(args.sweep) if args.sweep else {}
    cfg = args.cfg or spec.get("cfg")
    if not cfg:
        raise SweepError("give --cfg BASE.yaml with --grid KEY=V1,V2 ..., or --sweep configs/ablations/<file>.yaml")
    grid = {str(k): (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in (spec.get("grid") or {}).items()}
    grid.update(parse_grid_arg(g) for g in args.grid)
    variants, variant_cfgs = parse_variants(spec.get("variants"))
    if not grid and not variants:
        raise SweepError("the sweep has no grid: give --grid KEY=V1,V2 ... or a `grid:` (or `variants:`) mapping "
                         "in the sweep file")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [int(s) for s in spec.get("seeds", [0])]
    fixed = [str(o) for o in spec.get("set", [])] + list(args.overrides)
    names = short_names(list(grid))
    data = args.data or spec.get("data")
    name = spec.get("name") or f"{data + '_' if data else ''}{Path(cfg).stem}_{'_'.join(names[k] for k in grid)}"
    name = name.rstrip("_")
    root = os.environ.get("ISL_OUTPUT_ROOT", "") or "./runs"
    out = args.out or spec.get("out") or str(Path(root) / "ablations" / name)
    sweep = Sweep(cfg=str(cfg), grid=grid, seeds=seeds, fixed=fixed, tool=args.tool or spec.get("tool", "train_isl"),
                  out=out, data=data, variants=variants, variant_cfgs=variant_cfgs)
    workers = args.workers if args.workers is not None else int(spec.get("workers", 1))
    timeout = args.timeout if args.timeout is not None else spec.get("timeout")
    if workers < 1:
        raise SweepError(f"--workers must be >= 1, got {workers}")
    return sweep, workers, timeout


def collect_sweep(sweep: Sweep) -> list[dict]:
    """Rows of this sweep's finished runs (only its own combinations), swept values filled from the grid."""
    rows = []
    for spec in expand(sweep.grid, sweep.seeds, sweep.variants, sweep.variant_cfgs):
        results = finished_results(Path(sweep.out) / "runs" / spec.name / f"seed={spec.seed}")
        if results:
            row = read_run(results.parent)
            for key, value in spec.combo:
                row.setdefault(key, value)
            row.setdefault("seed", spec.seed)
            rows.append(row)
    return rows


def _describe_variant(sweep: Sweep, name: str) -> str:
    parts = ([f"base `{sweep.variant_cfgs[name]}`"] if name in sweep.variant_cfgs else []) + \
        [f"`{o}`" for o in sweep.variants[name]]
    return " ".join(parts) or "the base config"


def _intro(sweep: Sweep, summary: dict | None) -> str:
    lines = [f"Base `{sweep.cfg}`, tool `{sweep.tool}`, seeds {sweep.seeds}, grid: "
             + (", ".join(f"`{k}` in {v}" for k, v in sweep.grid.items()) or "none") + "."
             + "".join(f"\nVariant `{k}`: {_describe_variant(sweep, k)}." for k in sweep.variants),
             "Fixed overrides: " + (" ".join(f"`{o}`" for o in sweep.fixed) or "none") + "."]
    if summary and summary["failed"]:
        lines.append("\n**Failed runs** (after one retry): " + ", ".join(
            f"`{e['run']}` (log `{e['log']}`)" for e in summary["runs"] if e["status"] == "failed") + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    sweep, workers, timeout = build_sweep(args)
    only = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    specs = select_variants(expand(sweep.grid, sweep.seeds, sweep.variants, sweep.variant_cfgs), sweep.variants, only)
    if args.dry_run:
        validate(sweep, specs)
        status = plan(sweep, specs, workers)
        for spec in specs:
            print(f"[{status['states'][spec.label]}]", spec.label, " ".join(spec.overrides(sweep.fixed)))
        counts = status["counts"]
        print(f"{len(specs)} runs -> {sweep.out}: {counts['finished']} finished, "
              + (f"{counts['running']} running (another sweep process holds its lock), " if counts["running"] else "")
              + f"{counts['resumable']} resumable (an earlier attempt left a checkpoint), {counts['to run']} to run")
        if counts["finished"] < len(specs):
            hours = status["estimate_s"] / 3600
            print(f"estimate for the unfinished runs: {hours:.1f} h with {workers} worker(s), from the wall times of "
                  "the finished runs (same combination where there is one; a resumable run by the share of epochs it has "
                  "left)"
                  + (f"; {status['unestimated']} run(s) without any finished run to go by" if status["unestimated"]
                     else ""))
        return {"runs": [s.label for s in specs], "failed": [], **status}
    summary = None
    if not args.collect_only:
        print(f"sweep: {len(specs)} runs ({len(specs) // len(sweep.seeds)} combinations x {len(sweep.seeds)} seeds), "
              f"{workers} worker(s) -> {sweep.out}")
        summary = execute(sweep, workers=workers, data_root=args.data_root, timeout=timeout,
                          threads_per_run=args.threads_per_run, progress=(lambda line: None) if args.quiet else print,
                          only=only)
    rows = collect_sweep(sweep)
    out = {"failed": [], **(summary or {}), "finished": len(rows)}
    if rows:
        by = (["variant"] if sweep.variants else []) + list(sweep.grid)
        written = write_summary(rows, sweep.out, by=by, params=list(sweep.grid),
                                title=f"Sweep {Path(sweep.out).name}", intro=_intro(sweep, summary))
        out.update(markdown=str(written["markdown"]), csv=str(written["csv"]),
                   figures=[str(p) for p in written["figures"]])
        print(f"results: {written['markdown']}, {written['csv']}, {len(written['figures'])} figures")
    else:
        print("no finished runs yet: nothing to tabulate")
    if summary:
        print(f"done {len(summary['done'])}, retried {len(summary['retried'])}, skipped (already finished) "
              f"{len(summary['skipped'])}, "
              + (f"busy (another sweep process is running it) {len(summary['busy'])}, " if summary["busy"] else "")
              + f"failed {len(summary['failed'])}")
        for entry in summary["runs"]:
            if entry["status"] == "failed":
                print(f"FAILED {entry['run']} (exit {entry['returncode']}), log: {entry['log']}")
    return out


def cli() -> None:
    """Console command: exit status 1 when a run failed, 2 and a one-line message for a sweep that cannot run."""
    sys.exit(1 if run_cli(main).get("failed") else 0)


if __name__ == "__main__":
    cli()
