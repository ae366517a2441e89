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


def test_redirected_run_logs_a_line_per_epoch(tmp_path, monkeypatch):
    """A run whose output goes to a file (nohup, a batch job) reports every encoder epoch, GAN epoch and mining
    pass on stderr and in run.log, with images/s, time per epoch and an ETA; on a terminal the bars show them."""
    import subprocess
    from pathlib import Path
    from test_train_isl import TINY
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in __import__("os").environ.items() if k != progress.ENV}
    with open(tmp_path / "err.txt", "w") as err:
        subprocess.run([sys.executable, str(root / "tools" / "train_isl.py"), "--cfg", "digits.yaml",
                        "--output-root", str(tmp_path / "runs"), "--no-tensorboard", "--set", *TINY,
                        "train.eval_every=100"], stdout=subprocess.DEVNULL, stderr=err, check=True, env=env)
    text = (tmp_path / "err.txt").read_text()
    for line in ("round 0 encoder epoch 1/2: loss", "round 0 encoder epoch 2/2:", "round 1 GAN epoch 1/2:",
                 "round 1 mining pass 1/2:", "round 1 encoder epoch 1/1:"):
        assert line in text, line
    assert "images/s" in text and "s/epoch, ETA" in text and "\r" not in text
    (run_log,) = (tmp_path / "runs").rglob("run.log")
    assert run_log.read_text().count("encoder epoch") == 3


def test_progress_lines_stay_off_the_console_while_bars_are_drawn(monkeypatch):
    import logging
    record = logging.LogRecord("isl", logging.INFO, __file__, 1, "round 0 encoder epoch 1/2", None, None)
    record.progress = True
    monkeypatch.setenv(progress.ENV, "on")
    assert not progress.BarsShownFilter().filter(record)
    monkeypatch.setenv(progress.ENV, "off")
    assert progress.BarsShownFilter().filter(record)
    assert progress.format_duration(754) == "12m34s" and progress.format_duration(7384) == "2h03m"
