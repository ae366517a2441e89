"""Write the tables and figures of a set of finished runs: CSV per run, CSV and markdown of mean ± std per
group (method / experiment / swept values), a bar chart per group, and, for swept config keys, line plots of
each metric against each key (averaged over the others) and heat maps of each pair of keys.

Shared by `tools/ablate.py` (groups = the sweep's combinations) and `tools/report.py` (groups = methods).
"""
from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .collect import (METRIC_TITLES, METRICS, MINING_DIAGNOSTIC_NOTES, MINING_DIAGNOSTICS, PLOT_METRICS,
                      aggregate, held_out_groups, markdown_table, mean_std, present_selection_metrics, short_names,
                      sort_key, write_csv)

RUN_COLUMNS = ("seed", *METRICS, "pairs", "epochs", "run_dir")


def _slug(text: str) -> str:
    return re.sub(r"[^\w.=+-]", "-", text)


def _values(rows: Sequence[dict], key: str) -> list:
    seen = {}
    for row in rows:
        seen.setdefault(str(row.get(key)), row.get(key))
    return sorted(seen.values(), key=sort_key)


def varying(rows: Sequence[dict], keys: Sequence[str]) -> list[str]:
    """The keys that take more than one value among the rows."""
    return [k for k in keys if len(_values([r for r in rows if r.get(k) is not None], k)) > 1]


def param_figures(rows: Sequence[dict], params: Sequence[str], out_dir: Path,
                  metrics: Sequence[str] = PLOT_METRICS) -> list[Path]:
    """line_<p>.png for every swept key and heatmap_<p>_<q>.png for every pair (means over the other keys and
    seeds, from the per-run rows)."""
    names = short_names(list(params))
    paths = []
    for p in params:
        rows_p = [r for r in rows if r.get(p) is not None]  # e.g. a raw-pixel row has no config
        values = _values(rows_p, p)
        stats = {}
        for m in metrics:
            ms = [mean_std(r.get(m) for r in rows_p if str(r.get(p)) == str(v)) for v in values]
            stats[m] = ([x[0] for x in ms], [x[1] for x in ms])
        paths.append(plots.param_lines(out_dir / f"line_{_slug(names[p])}.png", names[p], values, stats))
    for p, q in itertools.combinations(params, 2):
        rows_pq = [r for r in rows if r.get(p) is not None and r.get(q) is not None]
        pv, qv = _values(rows_pq, p), _values(rows_pq, q)
        grids = {}
        for m in metrics:
            grid = np.full((len(pv), len(qv)), np.nan)  # |p| x |q|
            for (i, a), (j, b) in itertools.product(enumerate(pv), enumerate(qv)):
                cell = [r.get(m) for r in rows_pq if str(r.get(p)) == str(a) and str(r.get(q)) == str(b)]
                grid[i, j] = mean_std(cell)[0]
            grids[m] = grid
        paths.append(plots.heatmaps(out_dir / f"heatmap_{_slug(names[p])}_{_slug(names[q])}.png", names[p], pv,
                                    names[q], qv, grids))
    return paths


def group_label(group: dict, by: Sequence[str]) -> str:
    names = short_names([k for k in by if "." in k])
    parts = [f"{names[k]}={group.get(k)}" if k in names else str(group.get(k)) for k in by
             if group.get(k) is not None]  # a raw-pixel row has no config: no "alpha=None"
    return " ".join(parts)


def write_summary(rows: Sequence[dict], out_dir: str | Path, by: Sequence[str], params: Sequence[str] = (),
                  title: str = "Results", md_path: str | Path | None = None, intro: str = "",
                  stem: str = "results", bar_chart: bool = True) -> dict[str, Any]:
    """Write <stem>.csv (mean/std per group), runs.csv (per run), <stem>.md (or `md_path`) and the figures.

    rows: `collect.collect(...)` rows; by: grouping keys (results keys or dotted config keys); params: swept
    config keys to plot. Returns {"groups": [...], "markdown": path, "csv": path, "figures": [paths]}.
    """
    if not rows:
        raise ValueError(f"no finished runs to summarise for {title!r}: no results.json was found")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    selection = present_selection_metrics(rows)
    groups = aggregate(rows, by, (*METRICS, *selection))
    columns = [*by, "n", "seeds", *(f"{m}_{s}" for m in (*METRICS, *selection) for s in ("mean", "std"))]
    csv_path = write_csv(out_dir / f"{stem}.csv", groups, columns)
    write_csv(out_dir / "runs.csv", sorted(rows, key=lambda r: tuple(sort_key(r.get(k)) for k in (*by, "seed"))),
              [*by, *(c for c in (*RUN_COLUMNS, *selection) if c not in by)])
    figures = []
    params = varying(rows, params)
    if params:
        figures += param_figures(rows, params, out_dir)
    if bar_chart and len(groups) > 1:
        bar_metrics = [m for m in ("knn_acc", "nmi", "acc", "ari")
                       if any(math.isfinite(g[f"{m}_mean"]) for g in groups)]
        figures.append(plots.bar_chart(out_dir / f"{stem}_bars.png", [group_label(g, by) for g in groups],
                                       bar_metrics, {m: [g[f"{m}_mean"] for g in groups] for m in bar_metrics},
                                       {m: [g[f"{m}_std"] for g in groups] for m in bar_metrics}, title=title))
    md_path = Path(md_path) if md_path else out_dir / f"{stem}.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    seeds = sorted({r.get("seed") for r in rows}, key=sort_key)
    text = [f"# {title}\n", intro.strip() + "\n" if intro.strip() else "",
            f"{len(rows)} finished runs, {len(groups)} groups, seeds {seeds}. Mean ± sample std over seeds "
            f"(a single seed shows the mean only); the best mean of each score among the rows with the most "
            f"seeds is bold.\n",
            markdown_table(groups, by)]
    if selection:  # n counts the runs that have held-out scores
        held_out = held_out_groups(rows, by, selection, selection)
        text += ["Held-out scores: the same protocol on a held-out part of the TRAIN split (eval.val_fraction), "
                 "never the test split; choose settings by these, not by the table above.\n",
                 markdown_table(held_out, by, selection)]
    if any(r.get(m) is not None for r in rows for m in MINING_DIAGNOSTICS):
        diag = [g for g in aggregate(rows, by, MINING_DIAGNOSTICS)
                if any(math.isfinite(g[f"{m}_mean"]) for m in MINING_DIAGNOSTICS)]
        text += [f"GAN mining diagnostics (means over each run's mining passes, then over seeds): "
                 f"{', '.join(f'{METRIC_TITLES[m]} = {MINING_DIAGNOSTIC_NOTES[m]}' for m in MINING_DIAGNOSTICS)}.\n",
                 markdown_table(diag, by, MINING_DIAGNOSTICS, bold_best=False)]
    text += [f"![{p.stem}]({_relative(p, md_path.parent)})\n" for p in figures]
    md_path.write_text("\n".join(t for t in text if t))
    return {"groups": groups, "markdown": md_path, "csv": csv_path, "figures": figures}


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
