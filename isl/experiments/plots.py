"""Figures of experiments as PNG files: metric-vs-parameter lines, parameter-pair heat maps, method bar charts,
per-round ISL curves (Wang et al., ICCV 2021: mined pairs and precision per round, D / G losses, kNN / NMI per
epoch), a 2-D t-SNE embedding coloured by class, and the clustering confusion matrix.

Figures are built on `matplotlib.figure.Figure` and rendered by the Agg canvas: no pyplot, no global backend
switch, no GUI, safe in worker processes. Every function takes plain numbers and a path, writes one PNG and
returns the path.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .collect import METRIC_TITLES


def _figure(n_panels: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path


def _positions(values: Sequence) -> tuple[np.ndarray, list[str], bool]:
    """x positions: the values themselves when all are numbers, else 0..n-1 with the values as labels."""
    labels = [str(v) for v in values]
    try:
        xs = np.array([float(v) for v in values])
        if all(not isinstance(v, bool) for v in values) and np.isfinite(xs).all():
            return xs, labels, True
    except (TypeError, ValueError):
        pass
    return np.arange(len(values), dtype=float), labels, False


def param_lines(path: str | Path, param: str, values: Sequence, stats: dict[str, tuple[Sequence, Sequence]]) -> Path:
    """One panel per metric: mean (line) +- std (band) of the metric against the values of `param`.

    stats: metric -> (means V, stds V), V = len(values).
    """
    fig, axes = _figure(len(stats))
    xs, labels, _ = _positions(values)
    for ax, (metric, (means, stds)) in zip(axes, stats.items()):
        m, s = np.asarray(means, dtype=float), np.nan_to_num(np.asarray(stds, dtype=float))
        ax.plot(xs, m, marker="o")
        ax.fill_between(xs, m - s, m + s, alpha=0.2)
        ax.set_xticks(xs, labels)
        ax.set_xlabel(param)
        ax.set_title(METRIC_TITLES.get(metric, metric))
        ax.grid(alpha=0.3)
    fig.suptitle(f"metrics against {param} (mean ± std over the other parameters and seeds)", fontsize=10)
    return _save(fig, path)


def heatmaps(path: str | Path, row_param: str, row_values: Sequence, col_param: str, col_values: Sequence,
             grids: dict[str, np.ndarray]) -> Path:
    """One annotated heat map per metric; grids: metric -> R x C means (NaN = no run)."""
    fig, axes = _figure(len(grids), width=4.0, height=3.6)
    for ax, (metric, grid) in zip(axes, grids.items()):
        grid = np.asarray(grid, dtype=float)  # R x C
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(col_values)), [str(v) for v in col_values])
        ax.set_yticks(range(len(row_values)), [str(v) for v in row_values])
        ax.set_xlabel(col_param)
        ax.set_ylabel(row_param)
        ax.set_title(METRIC_TITLES.get(metric, metric))
        finite = grid[np.isfinite(grid)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for (i, j), value in np.ndenumerate(grid):
            text = "–" if not math.isfinite(value) else f"{value:.3f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if math.isfinite(value) and value > middle else "white")
        fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path)


def bar_chart(path: str | Path, labels: Sequence[str], metrics: Sequence[str], means: dict[str, Sequence[float]],
              stds: dict[str, Sequence[float]], title: str = "") -> Path:
    """Bars of each label's (method's) mean per metric, error bars = std over seeds; means/stds: metric -> L.

    Up to 8 labels: one panel, bars grouped by metric. More (e.g. every baseline): one panel per metric with
    horizontal bars, so that each label stays readable.
    """
    n = len(labels)
    if n <= 8:
        fig, (ax,) = _figure(1, width=7.5, height=4.0)
        width = 0.8 / max(n, 1)
        centres = np.arange(len(metrics), dtype=float)
        for i, label in enumerate(labels):
            m = np.array([means[k][i] for k in metrics], dtype=float)
            s = np.nan_to_num(np.array([stds[k][i] for k in metrics], dtype=float))
            ax.bar(centres - 0.4 + width * (i + 0.5), np.nan_to_num(m), width, yerr=s, capsize=2, label=label)
        ax.set_xticks(centres, [METRIC_TITLES.get(k, k) for k in metrics])
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        if title:
            ax.set_title(title)
        return _save(fig, path)
    fig, axes = _figure(len(metrics), width=3.6, height=max(3.0, 0.22 * n + 1))
    ys = np.arange(n, dtype=float)
    for j, (ax, metric) in enumerate(zip(axes, metrics)):
        m, s = np.asarray(means[metric], dtype=float), np.nan_to_num(np.asarray(stds[metric], dtype=float))
        ax.barh(ys, np.nan_to_num(m), xerr=s, capsize=2, color="tab:blue", alpha=0.8)
        ax.set_yticks(ys, list(labels) if j == 0 else [""] * n, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.05)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(METRIC_TITLES.get(metric, metric))
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _round_lines(ax, xs_by_round: dict[int, float]) -> None:
    for x in sorted(xs_by_round.values())[1:]:  # the first stage needs no boundary
        ax.axvline(x, color="grey", lw=0.8, ls=":")


def round_curves(path: str | Path, records: Sequence[dict], rounds: Sequence[dict], title: str = "") -> Path:
    """Four panels of one ISL run: mined pairs and their precision per round; D and G losses per GAN epoch;
    kNN accuracy and NMI per evaluated encoder epoch; encoder losses L1 / L2 per epoch. Dotted lines mark rounds.

    records: metrics.jsonl records; rounds: `collect.round_table(records)`.
    """
    fig, axes = _figure(4, width=4.0, height=3.3)
    ax = axes[0]
    r_idx = [r["round"] for r in rounds]
    ax.bar(r_idx, [r.get("pairs") or 0 for r in rounds], color="tab:blue", alpha=0.6, label="pairs")
    ax.set_xlabel("round")
    ax.set_ylabel("positive pairs", color="tab:blue")
    twin = ax.twinx()
    twin.plot(r_idx, [np.nan if r.get("pair_precision") is None else r["pair_precision"] for r in rounds],
              color="tab:red", marker="o")
    twin.set_ylim(0, 1.05)
    twin.set_ylabel("pair precision", color="tab:red")
    ax.set_xticks(r_idx)
    ax.set_title("mined positives per round")

    gan = [r for r in records if r.get("stage") == "gan"]
    ax = axes[1]
    if gan:
        x = np.arange(1, len(gan) + 1)
        for key in ("d_loss", "g_loss", "heldout_d_loss"):
            if any(r.get(key) is not None for r in gan):
                ax.plot(x, [np.nan if r.get(key) is None else r[key] for r in gan], label=key)
        _round_lines(ax, {r["round"]: i + 0.5 for i, r in reversed(list(enumerate(gan)))})
        ax.legend(fontsize=7)
        ax.set_xlabel("GAN epoch (all rounds)")
    else:
        ax.text(0.5, 0.5, "no GAN stage", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("discriminator / generator loss")

    enc = [r for r in records if r.get("stage") == "encoder"]
    starts = {r["round"]: r["global_epoch"] - 0.5 for r in reversed(enc)}
    ax = axes[2]
    evals = [r for r in enc if r.get("knn_acc") is not None]
    for key in ("knn_acc", "nmi"):
        ax.plot([r["global_epoch"] for r in evals], [np.nan if r.get(key) is None else r[key] for r in evals],
                marker=".", label=METRIC_TITLES[key])
    _round_lines(ax, starts)
    ax.set_xlabel("encoder epoch")
    ax.legend(fontsize=7)
    ax.set_title("evaluation")
    ax = axes[3]
    for key in ("l1", "l2", "loss"):
        if any(r.get(key) is not None for r in enc):
            ax.plot([r["global_epoch"] for r in enc], [np.nan if r.get(key) is None else r[key] for r in enc],
                    label=key)
    _round_lines(ax, starts)
    ax.set_xlabel("encoder epoch")
    ax.legend(fontsize=7)
    ax.set_title("encoder loss")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def embedding_scatter(path: str | Path, coords: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                      title: str = "") -> Path:
    """coords: N x 2 (e.g. t-SNE), labels: N class indices -> one colour per class with a legend."""
    coords, labels = np.asarray(coords), np.asarray(labels)
    if coords.ndim != 2 or coords.shape[1] != 2 or labels.shape != (coords.shape[0],):
        raise ValueError(f"expected coords N x 2 and labels N, got {coords.shape} and {labels.shape}")
    fig, (ax,) = _figure(1, width=6.5, height=5.5)
    cmap = "tab10" if len(class_names) <= 10 else "tab20"
    for c, name in enumerate(class_names):
        keep = labels == c  # N
        if keep.any():
            ax.scatter(coords[keep, 0], coords[keep, 1], s=4, label=str(name),
                       color=_colour(cmap, c, len(class_names)))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              ncols=1 if len(class_names) <= 20 else 2)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _colour(cmap_name: str, i: int, n: int):
    from matplotlib import colormaps
    cmap = colormaps[cmap_name]
    return cmap(i % cmap.N) if n <= cmap.N else colormaps["hsv"](i / n)


def confusion_plot(path: str | Path, matrix: np.ndarray, row_names: Sequence[str], col_names: Sequence[str],
                   title: str = "") -> Path:
    """matrix: classes x (mapped clusters) counts; rows are normalised to colour, cells show counts."""
    matrix = np.asarray(matrix)
    size = max(4.0, 0.45 * max(matrix.shape) + 2)
    fig, (ax,) = _figure(1, width=size + 1, height=size)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)  # classes x columns
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in col_names], rotation=90)
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in row_names])
    ax.set_xlabel("k-means cluster (mapped to a class by the Hungarian algorithm)")
    ax.set_ylabel("true class")
    if matrix.shape[0] * matrix.shape[1] <= 400:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the class")
    if title:
        ax.set_title(title)
    return _save(fig, path)
