"""Every figure function writes a non-empty PNG, also with missing values, one value, or a single class."""
import numpy as np
import pytest

from isl.experiments import plots

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 1000


def test_param_lines_numeric_and_categorical(tmp_path):
    stats = {"knn_acc": ([0.8, 0.9, np.nan], [0.01, np.nan, np.nan]), "nmi": ([0.5, 0.6, 0.7], [0.0, 0.1, 0.2])}
    assert _is_png(plots.param_lines(tmp_path / "a.png", "alpha", [0.5, 1.0, 2.0], stats))
    assert _is_png(plots.param_lines(tmp_path / "b.png", "strategy", ["gan", "knn", "none"], stats))
    assert _is_png(plots.param_lines(tmp_path / "c" / "d.png", "alpha", [1.0], {"acc": ([0.5], [np.nan])}))


def test_heatmaps_with_missing_cells(tmp_path):
    grid = np.array([[0.1, np.nan, 0.3], [0.4, 0.5, 0.6]])
    empty = np.full((2, 3), np.nan)
    assert _is_png(plots.heatmaps(tmp_path / "h.png", "alpha", [0.5, 1.0], "radius", [0.5, 0.6, 0.9],
                                  {"knn_acc": grid, "pair_precision": empty}))


def test_bar_chart(tmp_path):
    labels = ["isl", "npid", "triplet"]
    means = {"knn_acc": [0.9, 0.8, 0.95], "nmi": [0.7, np.nan, 0.9]}
    stds = {"knn_acc": [0.01, np.nan, 0.0], "nmi": [0.02, np.nan, np.nan]}
    assert _is_png(plots.bar_chart(tmp_path / "b.png", labels, ["knn_acc", "nmi"], means, stds, title="t"))
    many = [f"baseline:loss{i}" for i in range(25)]  # every baseline: one horizontal panel per metric
    rng = np.random.default_rng(0)
    values = {"knn_acc": rng.uniform(size=25), "nmi": rng.uniform(size=25)}
    assert _is_png(plots.bar_chart(tmp_path / "many.png", many, ["knn_acc", "nmi"], values, values))


def test_round_curves_without_gan(tmp_path):
    records = [{"stage": "encoder", "round": 0, "epoch": e, "global_epoch": e, "l1": 5.0 - e, "l2": 0.0,
                "knn_acc": 0.5 + e / 10, "nmi": 0.4} for e in range(1, 4)]
    rounds = [{"round": 0, "pairs": 0, "pair_precision": None}]
    assert _is_png(plots.round_curves(tmp_path / "c.png", records, rounds, title="npid"))


def test_embedding_scatter_and_confusion(tmp_path):
    rng = np.random.default_rng(0)
    coords, labels = rng.normal(size=(60, 2)), np.repeat(np.arange(12), 5)
    assert _is_png(plots.embedding_scatter(tmp_path / "t.png", coords, labels, [f"c{i}" for i in range(12)]))
    assert _is_png(plots.embedding_scatter(tmp_path / "one.png", coords, np.zeros(60, int), ["only"]))
    with pytest.raises(ValueError, match="N x 2"):
        plots.embedding_scatter(tmp_path / "bad.png", coords[:, :1], labels, ["a"])
    matrix = np.array([[5, 1, 0], [0, 0, 0], [2, 0, 7]])  # an empty class row must not divide by zero
    assert _is_png(plots.confusion_plot(tmp_path / "m.png", matrix, ["a", "b", "c"], ["a", "b", "c"], title="x"))
