"""tools/probe.py and tools/baseline_table.py on tiny digits runs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from isl.config import ConfigError

from baseline_tool_helpers import TINY, load_tool


probe = load_tool("probe")
table = load_tool("baseline_table")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    results = load_tool("train_baseline").main(["--cfg", "baselines/triplet.yaml", "--set", *TINY,
                                                "--output-root", str(out), "--no-tensorboard"])
    return Path(results["run_dir"]) / "checkpoints" / "last.pt"


def test_probe_prints_a_row_per_loss(checkpoint, capsys):
    names = ["triplet", "histogram", "magnet", "proxy_anchor", "hierarchical_triplet", "clustering"]
    rows = probe.main(["--ckpt", str(checkpoint), "--losses", ",".join(names), "--batches", "2",
                       "--batch-size", "32", "--m", "4"])
    assert [r["loss"] for r in rows] == names
    assert all(math.isfinite(r[k]) for r in rows for k in ("value", "std", "random", "random_std"))
    printed = capsys.readouterr().out
    assert all(f"| {n} |" in printed for n in names)


def test_probe_errors(checkpoint):
    with pytest.raises(ConfigError, match="Valid names"):
        probe.main(["--ckpt", str(checkpoint), "--losses", "triplett"])
    with pytest.raises(ConfigError, match="m values that fit"):
        probe.main(["--ckpt", str(checkpoint), "--losses", "triplet", "--m", "100", "--batch-size", "200"])


def test_probe_separated_clusters_score_better_than_random():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 16, generator=g), dim=1)
    labels = torch.arange(4).repeat_interleave(20)
    tight = F.normalize(centres[labels] + 0.05 * torch.randn(80, 16, generator=g), dim=1)
    loose = F.normalize(torch.randn(80, 16, generator=g), dim=1)
    batches = [list(range(0, 80, 2)), list(range(1, 80, 2))]
    names = ["triplet", "histogram", "magnet", "proxy_nca", "proxy_nca_pp", "clustering", "multi_similarity"]
    good = probe.probe_losses(tight, labels, names, batches, 4)
    bad = probe.probe_losses(loose, labels, names, batches, 4)
    for name in names:
        assert good[name][0] < bad[name][0], name


def test_proxies_start_at_the_class_means():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    means = probe.class_means(feats, torch.tensor([0, 0, 2]), 3)
    assert torch.allclose(means, torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]]))


def test_table_runs_and_writes_between_markers(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{table.BEGIN}\nold\n{table.END}\noutro\n")
    rows = table.main(["--losses", "triplet,magnet", "--set", *TINY, "--output-root", str(tmp_path / "runs"),
                       "--write", str(doc)])
    assert [r["loss"] for r in rows] == ["magnet", "triplet"] or [r["loss"] for r in rows] == ["triplet", "magnet"]
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    for r in rows:
        assert f"| {r['loss']} | document 002 | {r['knn_acc']:.4f} |" in text
    assert table.format_table(rows) in capsys.readouterr().out


def test_table_m_per_class_adjustment():
    extra, note = table.fit_m_per_class("baselines/triplet.yaml", ["baseline.m_per_class=4"])  # 32 classes > 10
    assert extra == ["baseline.m_per_class=16"] and note == "m_per_class 4 -> 16"
    assert table.fit_m_per_class("baselines/triplet.yaml", []) == ([], "")
