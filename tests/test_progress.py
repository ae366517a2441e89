"""Progress bars only on a terminal: the switch itself, and a real sweep whose per-run log holds no
carriage-return progress lines (tools/ablate.py running tools/train_isl.py on a tiny digits schedule)."""
import io
import sys

from isl import progress
from isl.tools import ablate


def test_bars_follow_the_terminal_and_the_switch(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())          # a file, not a terminal
    assert not progress.enabled() and progress.tqdm(range(3)).disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.enabled()
    monkeypatch.setenv(progress.ENV, "off")
    assert not progress.enabled()
    monkeypatch.setenv(progress.ENV, "on")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress.enabled()
    progress.disable_progress()
    assert not progress.enabled()


def test_ablate_run_log_has_no_carriage_returns(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    out = tmp_path / "sweep"
    # knn mining: encoder epochs (epoch and batch bars) and a mining pass (mining bar) in one short run
    res = ablate.main(["--cfg", "digits.yaml", "--grid", "isl.mining.strategy=knn", "--out", str(out), "--quiet",
                       "--set", "train.epochs_first=1", "train.epochs_per_round=1", "isl.rounds=1",
                       "train.max_steps_per_epoch=2", "eval.kmeans_restarts=1", "isl.mining.max_passes=1"])
    assert not res["failed"] and res["finished"] == 1
    (log,) = (out / "logs").glob("*.log")
    text = log.read_text()
    assert "INFO round 0 epoch 1" in text and "\r" not in text and "\x1b[" not in text
    (run_log,) = (out / "runs").rglob("run.log")
    assert "\r" not in run_log.read_text()
