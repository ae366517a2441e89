"""Fault injection: a training process SIGKILLed right after each kind of checkpoint (encoder epoch, GAN epoch,
each mining pass) and at a random moment, resumed with `--resume auto` every time, ends bit-identical to an
uninterrupted run (model, bank, positive sets, G and D), with the GAN-mining options that draw view features
and diagnostics switched on."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from isl.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.epochs_first=2", "train.epochs_per_round=1", "isl.rounds=1", "train.batch_size=64",
        "train.max_steps_per_epoch=3", "train.eval_every=2", "isl.gan.max_epochs=2", "isl.gan.min_epochs=1",
        "isl.gan.batch_size=256", "isl.gan.num_candidates=64", "isl.gan.min_d_gap=-1.0", "isl.gan.diag_steps=5",
        "isl.mining.max_passes=3", "isl.mining.quota=1.5", "isl.mining.radius=1.2", "isl.mining.topk=1",
        "eval.kmeans_restarts=1", "eval.knn_k=5", "eval.linear_probe=false", "model.low_dim=16",
        "isl.gan.anchor=view", "isl.gan.positive_source=other", "isl.gan.stop=auc", "isl.mining.fill=ranked",
        "isl.gan.loss_weights=paper", "isl.mining.threshold_mode=absolute", "isl.mining.threshold=0.3",
        "experiment=fault"]


def _run(out: Path, *extra: str, kill_at: str = "", kill_after_s: float | None = None) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ISL_FAULT_KILL_AT": kill_at, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "isl.tools.train_isl", "--cfg", "digits.yaml", "--output-root", str(out),
           "--no-tensorboard", "--set", *TINY, *extra]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=kill_after_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return -signal.SIGKILL
    assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
    return proc.returncode


def _state(out: Path) -> dict:
    (ckpt,) = out.glob("fault/*/checkpoints/last.pt")
    state = load_checkpoint(ckpt)
    assert state["progress"]["stage"] == "done"
    return {name: state[name] for name in ("model", "bank", "positives", "G", "D")}


def _assert_equal(a: dict, b: dict) -> None:
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key} differs after the kills"


def _metrics(out: Path) -> str:
    (path,) = out.glob("fault/*/metrics.jsonl")
    return path.read_text()


def _kill_points(out: Path) -> list[int]:
    """Checkpoint numbers right after the first encoder epoch, the first GAN epoch and every mining pass: every
    record of those stages in metrics.jsonl is followed by one checkpoint."""
    records = [json.loads(line) for line in _metrics(out).splitlines()]
    stages = [r["stage"] for r in records if r["stage"] in ("encoder", "gan", "mining")]
    points = [stages.index("encoder") + 1, stages.index("gan") + 1]
    points += [k + 1 for k, stage in enumerate(stages) if stage == "mining"]
    assert len(points) >= 4, f"expected at least two mining passes, got stages {stages}"
    return points


def test_sigkill_after_every_kind_of_checkpoint_then_resume_is_bit_identical(tmp_path):
    full = tmp_path / "full"
    assert _run(full) == 0
    points = _kill_points(full)
    kills = ",".join(map(str, points))
    killed = tmp_path / "killed"
    assert _run(killed, kill_at=kills) == -signal.SIGKILL
    resumes = 0
    while _run(killed, "--resume", "auto", kill_at=kills) != 0:
        resumes += 1
        assert resumes < 10, "the run never finished"
    assert resumes == len(points) - 1
    _assert_equal(_state(full), _state(killed))
    metrics = _metrics(killed).splitlines()
    assert sum('"stage": "final"' in line for line in metrics) == 1


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    full = tmp_path / "full"
    start = time.perf_counter()
    assert _run(full) == 0
    duration = time.perf_counter() - start
    killed, rng = tmp_path / "killed", random.Random(0)
    code = _run(killed, kill_after_s=rng.uniform(0.4, 0.9) * duration)
    for _ in range(2):
        if code == 0:
            break
        if not list(killed.glob("fault/*/checkpoints/last.pt")):  # killed before the first checkpoint
            code = _run(killed, kill_after_s=rng.uniform(0.4, 0.9) * duration)
            continue
        code = _run(killed, "--resume", "auto", kill_after_s=rng.uniform(0.3, 0.6) * duration)
    if code != 0:
        code = _run(killed, "--resume", "auto")
    assert code == 0
    _assert_equal(_state(full), _state(killed))
