"""Train every registered baseline loss on digits (or --data NAME) and print one table of kNN / NMI / ACC / ARI.

Installed (`pip install -e .`): `isl-baseline-table ...`; from a checkout: `python tools/baseline_table.py ...`.

    python tools/baseline_table.py                                  # all losses, 10 epochs each (~5 min, 2 cores)
    python tools/baseline_table.py --losses triplet,magnet --set baseline.epochs=30
    python tools/baseline_table.py --write docs/baselines.md        # also replace the table in the doc

Each loss runs tools/train_baseline.py in this process with its own configs/baselines/<loss>.yaml (the
triplet yaml with the loss swapped in when a loss has none), plus --set overrides for all runs (default:
baseline.epochs=10). One documented adjustment: a yaml whose m-per-class batch needs more classes than the
data set has (batch_size / m_per_class > classes) gets m_per_class = batch_size / P, P the largest divisor of
batch_size not above the class count; the "notes" column says so. Runs go to --output-root (default
./runs); the table lists only what these runs returned.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from baselines.registry import DEEP_METRIC_LOSSES, LOSSES, unknown_name_error
from isl.cli import add_data_argument, baseline_data_base, run_cli
from isl.config import CONFIG_DIR, ConfigError, load_config
from isl.data import DATASETS
from isl.tools import train_baseline

BEGIN, END = "<!-- baseline-table:begin -->", "<!-- baseline-table:end -->"
DEFAULT_SET = ["baseline.epochs=10"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--losses", default="all", help="comma-separated loss names, or all")
    p.add_argument("--set", dest="overrides", nargs="*", action="extend", default=None, metavar="KEY=VALUE",
                   help=f"overrides for every run (default: {' '.join(DEFAULT_SET)})")
    p.add_argument("--output-root", default=None, help="runs folder (else $ISL_OUTPUT_ROOT or ./runs)")
    add_data_argument(p)
    p.add_argument("--write", default=None, metavar="MARKDOWN",
                   help=f"replace the text between {BEGIN} and {END} in this file with the table")
    return p


def config_for(name: str) -> tuple[str, list[str]]:
    """(yaml, overrides that select the loss) for one registered loss."""
    if (CONFIG_DIR / "baselines" / f"{name}.yaml").is_file():
        return f"baselines/{name}.yaml", []
    return "baselines/triplet.yaml", [f"baseline.loss={name}", "baseline.loss_kwargs={}"]


def fit_m_per_class(cfg_name: str, overrides: list[str], data: str | None = None) -> tuple[list[str], str]:
    """The m-per-class adjustment described in the module docstring: (extra overrides, note)."""
    cfg = load_config(cfg_name, overrides, base=baseline_data_base(data))
    b, batch = cfg.baseline, cfg.train.batch_size
    classes = DATASETS[cfg.data.name].num_classes
    if b.sampler != "m_per_class" or batch // max(b.m_per_class, 1) <= classes:
        return [], ""
    per_batch = max(p for p in range(1, classes + 1) if batch % p == 0)
    m = batch // per_batch
    return [f"baseline.m_per_class={m}"], f"m_per_class {b.m_per_class} -> {m}"


def format_table(rows: list[dict]) -> str:
    lines = ["| loss | family | kNN | NMI | ACC | ARI | epochs | sampler | seconds | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['family']} | {r['knn_acc']:.4f} | {r['nmi']:.4f} | {r['acc']:.4f} | "
                     f"{r['ari']:.4f} | {r['epochs']} | {r['sampler']} | {r['wall_time_s']:.0f} | {r['notes']} |")
    return "\n".join(lines)


def write_into(path: Path, table: str, header: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ConfigError(f"{path} has no {BEGIN} ... {END} markers to put the table between")
    before, rest = text.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    path.write_text(f"{before}{BEGIN}\n{header}\n\n{table}\n{END}{after}")


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    names = sorted(LOSSES) if args.losses == "all" else [n.strip() for n in args.losses.split(",")]
    for name in names:
        if name not in LOSSES:
            raise ConfigError(str(unknown_name_error("loss", name, LOSSES)))
    common = DEFAULT_SET if args.overrides is None else args.overrides
    rows, start = [], time.perf_counter()
    for name in names:
        cfg_name, select = config_for(name)
        fit, note = fit_m_per_class(cfg_name, select + common, args.data)
        argv_run = ["--cfg", cfg_name, "--set", *select, *common, *fit, "--no-tensorboard"]
        argv_run += ["--data", args.data] if args.data else []
        if args.output_root:
            argv_run += ["--output-root", args.output_root]
        results = train_baseline.main(argv_run)
        rows.append({**results, "family": "deep_metric" if name in DEEP_METRIC_LOSSES else "document 002",
                     "notes": note})
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in rows}))
    datasets = ", ".join(sorted({r["dataset"] for r in rows}))
    header = (f"{datasets}, seed {seeds}, `--set {' '.join(common)}`; command: `python tools/baseline_table.py"
              f"{'' if args.losses == 'all' else ' --losses ' + args.losses}"
              f"{'' if args.overrides is None else ' --set ' + ' '.join(args.overrides)}`; "
              f"{len(rows)} runs, {time.perf_counter() - start:.0f} s in all.")
    table = format_table(rows)
    print(header)
    print(table)
    if args.write:
        write_into(Path(args.write), table, header)
        print(f"table written into {args.write}")
    return rows


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
