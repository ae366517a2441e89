"""Compare finished runs (ISL, NPID, knn mining, baselines, raw pixels) and look inside trained encoders.

Installed (`pip install -e .`): `isl-report ...`; from a checkout: `python tools/report.py ...`.

    python tools/report.py runs/ablations/digits_comparison runs/digits_triplet --raw-pixels digits.yaml \\
        --out docs/results.md --title "Digits: ISL versus baselines"
    python tools/report.py runs/digits_isl/<stamp> --curves runs/digits_isl/<stamp> \\
        --tsne runs/digits_isl/<stamp> --confusion runs/digits_isl/<stamp> --out runs/report

Inputs are run directories or any folders above them (sweep folders, runs/): every results.json below them is
a run. Runs are grouped by their full resolved config minus the seed (method, experiment and the config keys
that differ between runs; keys that do not act on a method, like a baseline's GAN alpha, are left blank), or
by --group-by, and shown as mean ± std over seeds of kNN accuracy, NMI, ACC, ARI, mined-pair precision and
wall time, as markdown, CSV and a bar chart. --out DIR writes DIR/report.md; --out FILE.md writes that file and
puts the CSV and PNG files in FILE/ (docs/results.md -> docs/results/). Options: docs/tools.md.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from isl.cli import run_cli
from isl.config import ConfigError
from isl.experiments.collect import P_ADJUST, P_FAMILY, archive_runs, collect, load_published, write_csv
from isl.experiments.grouping import default_group_by, pooled_differences, relevant_only
from isl.experiments.summary import write_summary

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", help="finished run directories or folders holding them (sweeps, runs/)")
    p.add_argument("--out", default=None, help="output folder, or a .md file (default $ISL_OUTPUT_ROOT/report)")
    p.add_argument("--title", default="Comparison", help="heading of the markdown report")
    p.add_argument("--group-by", default=None,
                   help="comma-separated result or dotted config keys (default: method, experiment and every "
                        "config key that differs between runs, seed aside: runs of different configs are never "
                        "pooled); with this option the report names the keys a group pools over")
    p.add_argument("--raw-pixels", action="append", default=[], metavar="CFG",
                   help="add a row evaluating raw pixels of this experiment's data (tools/evaluate.py --features raw)")
    p.add_argument("--archive", default=None, metavar="DIR",
                   help="first copy each run's results.json, config.yaml and metrics.jsonl (no checkpoints) to DIR, "
                        "keeping the folder layout, e.g. docs/results/<name>/runs, so the table can be rebuilt later")
    p.add_argument("--published", action="append", default=[], metavar="YAML",
                   help="add rows of published numbers (e.g. docs/results/published/fashion_mnist.yaml), "
                        "marked as published, with their sources under the table")
    p.add_argument("--by-round", action="store_true",
                   help="add tables of each group's scores at the end of every round (from the runs' "
                        "metrics.jsonl; held-out scores too where the runs have them)")
    p.add_argument("--paired", default=None, metavar="KEY=VALUE",
                   help="add tables of each group's differences from the reference runs KEY=VALUE (e.g. "
                        "variant=knn, method=knn_mining) of the same seed, mean ± std over seeds with how many seeds "
                        "are above it and the paired t-test p-value; with --by-round, per round too")
    p.add_argument("--p-adjust", default="none", choices=P_ADJUST,
                   help="with --paired, also give each p-value corrected for the number of groups compared with "
                        "the reference (per round with --by-round): holm (Holm's step-down, any false positive) "
                        "or bh (Benjamini-Hochberg, the share of false positives); default none")
    p.add_argument("--p-family", default="metric", choices=P_FAMILY,
                   help="with --p-adjust, which p-values are corrected together: metric (the rows of one metric, "
                        "per round with --by-round; default) or table (every p-value of a table: all rows, metrics "
                        "and rounds, the stricter question whether anything in it differs)")
    p.add_argument("--curves", action="append", default=[], metavar="RUN_DIR",
                   help="per-round ISL curves and table from this run's metrics.jsonl")
    p.add_argument("--tsne", action="append", default=[], metavar="CKPT",
                   help="t-SNE of this checkpoint's (or run directory's) test features, coloured by class")
    p.add_argument("--tsne-points", type=int, default=5000, help="t-SNE of at most this many test points")
    p.add_argument("--confusion", action="append", default=[], metavar="CKPT",
                   help="k-means confusion matrix (Hungarian cluster-to-class map) of this checkpoint")
    p.add_argument("--data-root", default=None, help="data folder for --raw-pixels / --tsne / --confusion")
    p.add_argument("--device", default="cpu", help="device for feature extraction")
    return p


def output_paths(out: str | None) -> tuple[Path, Path]:
    """(assets folder, markdown file) for --out DIR or --out FILE.md."""
    if out is None:
        out = str(Path(os.environ.get("ISL_OUTPUT_ROOT", "") or "./runs") / "report")
    path = Path(out)
    if path.suffix == ".md":
        return path.with_suffix(""), path
    return path, path / "report.md"


def _run_name(path: str | Path) -> str:
    """runs/digits_isl/20250101-120000/checkpoints/last.pt -> digits_isl_20250101-120000."""
    path = Path(path).resolve()
    if path.is_file():
        path = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return f"{path.parent.name}_{path.name}"


def _checkpoint(path: str) -> Path:
    p = Path(path)
    return p / "checkpoints" / "last.pt" if p.is_dir() else p


def sweep_keys(paths: list[str]) -> list[str]:
    """Grid keys of the sweep folders among `paths` (their sweep.json), in order, without repeats."""
    keys: list[str] = []
    for path in paths:
        spec = Path(path) / "sweep.json"
        if spec.is_file():
            keys += [k for k in json.loads(spec.read_text()).get("grid", {}) if k not in keys]
    return keys


def raw_pixel_row(cfg: str, out_dir: Path, data_root: str | None) -> dict:
    """Evaluate raw pixels with the shared protocol through tools/evaluate.py; one row (method raw_pixels)."""
    from isl.tools import evaluate
    json_path = out_dir / f"raw_pixels_{Path(cfg).stem}.json"
    argv = ["--cfg", cfg, "--features", "raw", "--out", str(json_path)]
    argv += ["--data-root", data_root] if data_root else []
    results = evaluate.main(argv)
    return {**results, "method": "raw_pixels", "experiment": results.get("dataset", Path(cfg).stem),
            "run_dir": str(json_path)}


def _md_table(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def published_section(rows: list[dict]) -> str:
    """Sources of the published rows (not measured here)."""
    lines = [f"- {r['method']}: {r['source']}" for r in rows]
    return "Rows marked (published) are copied from the papers, not measured here:\n\n" + "\n".join(lines) + "\n"


def curves_section(run_dir: str, assets: Path, md_dir: Path) -> str:
    from isl.experiments import plots
    from isl.experiments.collect import round_table
    from isl.rundir import read_metrics

    records = read_metrics(run_dir)
    rounds = round_table(records)
    name = _run_name(run_dir)
    png = plots.round_curves(assets / f"curves_{name}.png", records, rounds, title=name)
    columns = ["round", "gan_epochs", "d_loss", "g_loss", "new_pairs", "pairs", "pair_precision", "knn_acc", "nmi"]
    write_csv(assets / f"rounds_{name}.csv", rounds, columns)
    return (f"## Per-round curves: {name}\n\nMined pairs and their precision per round, D / G losses per GAN "
            f"epoch, kNN / NMI per evaluated epoch (from `{run_dir}/metrics.jsonl`).\n\n"
            + _md_table(rounds, columns) + f"\n![curves {name}]({os.path.relpath(png, md_dir)})\n")


def per_round_rows(rows: list[dict]) -> list[dict]:
    """One row per (run, round) with that round's scores (`collect.round_scores`), for runs with a metrics.jsonl."""
    from isl.experiments.collect import round_scores
    from isl.rundir import read_metrics

    return [{**row, **scores} for row in rows
            if row.get("run_dir") and (Path(row["run_dir"]) / "metrics.jsonl").is_file()
            for scores in round_scores(read_metrics(row["run_dir"]))]


# the sentence the paired tables' introduction gains with --p-adjust, and its family with --p-family
ADJUSTED_NOTE = {
    "holm": " Holm = the p-value after Holm's correction for {family}: read it when you ask whether any of them "
            "differs.",
    "bh": " BH = the p-value after the Benjamini-Hochberg correction for {family}.",
}
FAMILY_NOTE = {
    "metric": "the number of rows with a p-value in its column (per round in the per-round table)",
    "table": "every p-value in its table (all rows, columns and rounds together)",
}


def paired_section(rows: list[dict], by: list[str], reference: str, by_round: bool, assets: Path,
                   p_adjust: str = "none", p_family: str = "metric") -> str:
    """Each group's differences from the reference runs of the same seed (`collect.paired_differences`): final
    scores, and with `by_round` the scores at the end of every round."""
    from isl.experiments.collect import (METRICS, ROUND_METRICS, paired_differences, paired_table, parse_reference,
                                         present_selection_metrics, write_csv)

    try:
        ref = parse_reference(reference)
        metrics = [m for m in METRICS if m not in ("wall_time_s", "d_auc", "fresh_d_auc")]
        metrics += present_selection_metrics(rows)
        groups = paired_differences(rows, by, ref, metrics, p_adjust=p_adjust, p_family=p_family)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    name = ",".join(f"{k}={v}" for k, v in ref.items())
    stats = ["mean", "std", "wins", "pairs", "p"] + (["p_adj"] if p_adjust != "none" else [])
    write_csv(assets / "paired.csv", groups, [*by, "n", "seeds", *(f"{m}_{s}" for m in metrics for s in stats)])
    text = [f"## Paired by seed against {name}\n",
            f"Each run minus the {name} run of the same seed (same split and initial encoder; mining variants also "
            "share round 0), mean "
            "± sample std over the seeds both have, and (seeds above it / seeds paired, p = the two-sided paired "
            "t-test p-value, given from 2 pairs). The seed spread of the means above mixes the seeds' common ups "
            "and downs into every row; these differences do not. With 3 seeds only a large, steady difference gets "
            "a small p." + ADJUSTED_NOTE.get(p_adjust, "").format(family=FAMILY_NOTE[p_family]) + "\n",
            paired_table(groups, by, metrics, p_adjust)]
    if by_round:
        per_round = per_round_rows(rows)
        round_metrics = [*ROUND_METRICS, *present_selection_metrics(per_round)]
        round_groups = paired_differences(per_round, [*by, "round"], ref, round_metrics, match=("round",),
                                          p_adjust=p_adjust, p_family=p_family)
        write_csv(assets / "paired_rounds.csv", round_groups,
                  [*by, "round", "n", "seeds", *(f"{m}_{s}" for m in round_metrics for s in stats)])
        text += [f"The same at the end of each round (round r of a run against round r of the {name} run of its "
                 "seed; mining variants share round 0, the same training, so their round-0 differences are zero).\n",
                 paired_table(round_groups, [*by, "round"], round_metrics, p_adjust)]
    return "\n".join(text)


def by_round_section(rows: list[dict], by: list[str], assets: Path) -> str:
    """Mean ± std over seeds of each group's scores at the end of every round (`collect.round_scores`)."""
    from isl.experiments.collect import (ROUND_GAN_METRICS, ROUND_METRICS, aggregate, held_out_groups,
                                         markdown_table, present_selection_metrics)

    per_round = per_round_rows(rows)
    if not per_round:
        return "## Scores at the end of each round\n\nNo run has evaluated epochs in a metrics.jsonl.\n"
    gan = [m for m in ROUND_GAN_METRICS if any(row.get(m) is not None for row in per_round)]
    keys, metrics = [*by, "round"], ["global_epoch", *ROUND_METRICS, *gan]
    selection = present_selection_metrics(per_round)
    groups = aggregate(per_round, keys, [*metrics, *selection])
    write_csv(assets / "rounds.csv", groups,
              [*keys, "n", "seeds", *(f"{m}_{s}" for m in (*metrics, *selection) for s in ("mean", "std"))])
    text = ["## Scores at the end of each round\n",
            "Each run's last evaluation of every round (round 0 = instance discrimination before any mining; "
            "epochs = encoder epochs so far), mean ± std over seeds"
            + ("; D AUC / fresh-D AUC: the held-out AUC of the co-trained and of a freshly trained D on the GAN "
               "that mined that round's pairs" if gan else "") + ". A run with `isl.rounds` = R ends with round "
            "R's scores: the learning-rate schedule restarts every round (`optim.restart_each_round`), so these "
            "are also the scores of shorter schedules.\n",
            markdown_table(groups, keys, metrics, bold_best=False)]
    if selection:
        held_out = held_out_groups(per_round, keys, ["global_epoch", *selection], selection)
        text += ["Held-out scores at the end of each round (eval.val_fraction: a held-out part of the TRAIN "
                 "split; choose a schedule by these, not by the test scores above); n counts the runs that "
                 "have them.\n", markdown_table(held_out, keys, ["global_epoch", *selection], bold_best=False)]
    return "\n".join(text)


def tsne_section(ckpt: str, assets: Path, md_dir: Path, args) -> str:
    from isl.experiments import plots
    from isl.experiments.embedding import checkpoint_features, tsne_2d

    features, labels, names, cfg = checkpoint_features(_checkpoint(ckpt), "test", args.data_root, args.device)
    coords, keep = tsne_2d(features, seed=cfg.seed, max_points=args.tsne_points)
    name = _run_name(_checkpoint(ckpt))
    png = plots.embedding_scatter(assets / f"tsne_{name}.png", coords, labels[keep], names,
                                  title=f"t-SNE of {name} test features ({len(keep)} points)")
    return f"## t-SNE: {name}\n\n![t-SNE {name}]({os.path.relpath(png, md_dir)})\n"


def confusion_section(ckpt: str, assets: Path, md_dir: Path, args) -> str:
    import numpy as np

    from isl.eval import kmeans
    from isl.experiments import plots
    from isl.experiments.embedding import checkpoint_features, mapped_confusion

    features, labels, names, cfg = checkpoint_features(_checkpoint(ckpt), "cluster", args.data_root, args.device)
    split = cfg.eval.cluster_on
    backend = {"auto": "auto", "faiss": "faiss", "torch": "sklearn"}[cfg.eval.backend]
    pred = kmeans(features, int(np.unique(labels).size), restarts=cfg.eval.kmeans_restarts, seed=cfg.seed,
                  backend=backend)
    matrix, classes, columns, acc = mapped_confusion(labels, pred)
    name = _run_name(_checkpoint(ckpt))
    row_names = [names[c] if c < len(names) else str(c) for c in classes]
    col_names = [names[int(c)] if c.isdigit() and int(c) < len(names) else c for c in columns]
    png = plots.confusion_plot(assets / f"confusion_{name}.png", matrix, row_names, col_names,
                               title=f"{name}: k-means on {split} points, ACC {acc:.3f}")
    return f"## Clustering confusion matrix: {name}\n\nACC {acc:.3f} ({split} points).\n\n" \
           f"![confusion {name}]({os.path.relpath(png, md_dir)})\n"


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if not (args.paths or args.raw_pixels or args.published or args.curves or args.tsne or args.confusion):
        raise ConfigError("give run directories to compare, or --raw-pixels / --curves / --tsne / --confusion")
    if (args.p_adjust != "none" and not args.paired) or (args.p_family != "metric" and args.p_adjust == "none"):
        raise ConfigError("--p-adjust corrects the p-values of --paired tables, and --p-family says how; give "
                          "--paired KEY=VALUE with --p-adjust, and --p-adjust holm|bh with --p-family")
    missing = [p for p in [*args.paths, *args.curves, *args.tsne, *args.confusion, *args.published]
               if not Path(p).exists()]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: no such file or folder; give run directories, sweep folders or "
                          "runs/ (and checkpoints or run directories for --tsne / --confusion)")
    assets, md_path = output_paths(args.out)
    assets.mkdir(parents=True, exist_ok=True)
    if args.archive and args.paths:
        archived = archive_runs(args.paths, args.archive)
        print(f"archived {len(archived)} runs' result files under {args.archive}")
    rows = collect(args.paths) if args.paths else []
    if args.paths and not rows:
        raise ConfigError(f"no finished runs under {', '.join(args.paths)}: no results.json was found below them "
                         f"(runs still training, or the wrong folder?)")
    rows += [raw_pixel_row(cfg, assets, args.data_root) for cfg in args.raw_pixels]
    published = [row for path in args.published for row in load_published(path)]
    rows += published
    rows = [relevant_only(r) for r in rows]  # a baseline row has no GAN alpha, an NPID row no radius
    swept = sweep_keys(args.paths)
    pooled: dict = {}
    if args.group_by:
        by = [k.strip() for k in args.group_by.split(",") if k.strip()]
        params = [k for k in by if "." in k]
        pooled = pooled_differences(rows, by)
    else:  # the full resolved config minus seed: runs of different schedules are never pooled
        by = default_group_by(rows, swept)
        params = [k for k in by if k in swept]  # line plots / heat maps only along a sweep's own keys
    intro = ""
    if pooled:
        notes = [f"`{' '.join(str(v) for v in group)}` pools runs that differ in {', '.join(keys)}"
                 for group, keys in pooled.items()]
        intro = "**Pooled configs** (--group-by " + ",".join(by) + "): " + "; ".join(notes) + "."
        print("warning: " + intro.replace("**", ""))
    written = {"figures": []}
    if rows:
        written = write_summary(rows, assets, by=by, params=params, title=args.title, md_path=md_path,
                                stem="report", intro=intro)
    else:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(f"# {args.title}\n")
    sections = [published_section(published)] if published else []
    sections += [by_round_section(rows, by, assets)] if args.by_round and args.paths else []
    sections += ([paired_section(rows, by, args.paired, args.by_round, assets, args.p_adjust,
                                   args.p_family)]
                 if args.paired and args.paths else [])
    sections += [curves_section(r, assets, md_path.parent) for r in args.curves]
    sections += [tsne_section(c, assets, md_path.parent, args) for c in args.tsne]
    sections += [confusion_section(c, assets, md_path.parent, args) for c in args.confusion]
    if sections:
        with open(md_path, "a") as fh:
            fh.write("\n" + "\n".join(sections))
    print(f"report: {md_path} ({len(rows)} runs; figures and CSV in {assets})")
    return {"markdown": str(md_path), "assets": str(assets), "rows": len(rows), "group_by": by,
            "groups": written.get("groups", [])}


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
