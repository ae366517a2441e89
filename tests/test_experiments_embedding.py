"""Inside a trained encoder: the Hungarian-mapped confusion matrix against brute force over all maps, t-SNE
shapes, and tools/report.py's --tsne / --confusion / --raw-pixels on a tiny untrained digits checkpoint."""
import importlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch


from isl.builders import build_encoder_from_config
from isl.checkpoint import CheckpointError
from isl.config import load_config, to_dict
from isl.eval import cluster_accuracy
from isl.experiments.embedding import hungarian_map, load_encoder, mapped_confusion, tsne_2d

PNG = b"\x89PNG\r\n\x1a\n"


def _brute_force_confusion(y_true, y_pred):
    """Try every injective cluster -> class map; return the best accuracy and its confusion matrix (loops)."""
    classes, clusters = sorted(set(y_true)), sorted(set(y_pred))
    best = (-1, None)
    for assigned in itertools.permutations(classes + [None] * max(0, len(clusters) - len(classes)), len(clusters)):
        mapping = dict(zip(clusters, assigned))
        correct = sum(1 for t, p in zip(y_true, y_pred) if mapping[p] == t)
        if correct > best[0]:
            matrix = [[0] * (len(classes) + 1) for _ in classes]
            for t, p in zip(y_true, y_pred):
                col = len(classes) if mapping[p] is None else classes.index(mapping[p])
                matrix[classes.index(t)][col] += 1
            best = (correct, matrix)
    return best[0] / len(y_true), np.array(best[1])


@pytest.mark.parametrize("y_true, y_pred", [
    ([0, 0, 0, 1, 1, 2, 2, 2], [2, 2, 1, 0, 0, 1, 1, 1]),          # a permutation with one mistake
    ([0, 0, 1, 1, 2, 2, 2, 0], [5, 5, 7, 9, 9, 7, 3, 3]),          # more clusters than classes: "unmatched"
    ([3, 3, 3, 3], [1, 1, 0, 0]),                                  # one class
    ([0, 1, 2, 0, 1, 2], [4, 4, 4, 4, 4, 4]),                      # one cluster
])
def test_mapped_confusion_is_the_best_map(y_true, y_pred):
    matrix, classes, names, acc = mapped_confusion(np.array(y_true), np.array(y_pred))
    brute_acc, brute = _brute_force_confusion(y_true, y_pred)
    assert acc == pytest.approx(brute_acc) == pytest.approx(cluster_accuracy(y_true, y_pred))
    assert matrix.sum() == len(y_true) and classes == sorted(set(y_true))
    assert (matrix.sum(axis=1) == [y_true.count(c) for c in classes]).all()  # rows are the true classes
    assert np.trace(matrix[:, :len(classes)]) == round(brute_acc * len(y_true))
    has_unmatched = len(set(y_pred)) > len(set(y_true))
    assert (names[-1] == "unmatched") == has_unmatched
    if has_unmatched:
        assert matrix[:, -1].sum() == brute[:, -1].sum()
    assert len(hungarian_map(np.array(y_true), np.array(y_pred))) == min(len(set(y_true)), len(set(y_pred)))
    with pytest.raises(ValueError):
        mapped_confusion(np.array(y_true), np.array(y_pred[:-1]))


def test_tsne_subsamples_with_a_seed():
    x = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    coords, keep = tsne_2d(x, seed=1, max_points=25)
    assert coords.shape == (25, 2) and np.isfinite(coords).all() and len(set(keep.tolist())) == 25
    assert (tsne_2d(x, seed=1, max_points=25)[1] == keep).all()
    with pytest.raises(ValueError, match="at least 5"):
        tsne_2d(x[:3])


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    cfg = load_config("digits.yaml", ["model.low_dim=8", "eval.kmeans_restarts=1", "eval.cluster_on=test"])
    torch.manual_seed(0)
    model = build_encoder_from_config(cfg)
    run = tmp_path / "runs" / "digits_isl" / "stamp"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"config": to_dict(cfg), "model": model.state_dict()}, run / "checkpoints" / "last.pt")
    return run


def test_report_tsne_confusion_and_raw_pixels(tiny_checkpoint, tmp_path):
    report = importlib.import_module("isl.tools.report")
    out = tmp_path / "rep"
    res = report.main(["--tsne", str(tiny_checkpoint), "--tsne-points", "120",
                       "--confusion", str(tiny_checkpoint / "checkpoints" / "last.pt"),
                       "--raw-pixels", "digits.yaml", "--out", str(out)])
    md = Path(res["markdown"]).read_text()
    for name in ("tsne_digits_isl_stamp.png", "confusion_digits_isl_stamp.png"):
        assert (out / name).read_bytes()[:8] == PNG and f"]({name})" in md
    raw = json.loads((out / "raw_pixels_digits.json").read_text())
    (group,) = res["groups"]
    assert group["method"] == "raw_pixels" and group["knn_acc_mean"] == raw["knn_acc"] and 0 < raw["knn_acc"] <= 1
    assert "ACC" in md and "(test points)" in md


def test_load_encoder_needs_model_and_config(tmp_path):
    torch.save({"model": {}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="lacks 'config'"):
        load_encoder(tmp_path / "bad.pt")
