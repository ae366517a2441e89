"""Experiments at a glance: sweeps over dotted config keys (ISL's alpha / r / h ablations, Wang et al., ICCV 2021,
and the ISL / knn mining / NPID comparison), collection of finished runs into rows with mean ± std over seeds,
tables, and figures.

    sweep.py      grid expansion, run naming, validation, resumable execution with N workers, retry once
    collect.py    run directories -> rows; mean / std over seeds; CSV and markdown tables; per-round tables
    summary.py    rows -> results.csv / results.md / runs.csv + line plots, heat maps and bar charts
    plots.py      matplotlib (Agg) figures: lines, heat maps, bars, per-round curves, t-SNE, confusion matrix
    embedding.py  a checkpoint's features, t-SNE coordinates, Hungarian-mapped clustering confusion matrix

Entry points: tools/ablate.py and tools/report.py (docs/tools.md). Nothing is imported here eagerly: torch and
matplotlib load only when a figure or a checkpoint needs them.
"""
