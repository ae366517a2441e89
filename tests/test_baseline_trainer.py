"""Every registered loss trains a few steps on digits through tools/train_baseline.py (in process), plus the
trainer's run directory, resume and config errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from baselines.registry import LOSSES
from isl.checkpoint import load_checkpoint
from isl.config import CONFIG_DIR, ConfigError, load_config
from isl.rundir import read_metrics

from baseline_tool_helpers import TINY, load_tool


train_baseline = load_tool("train_baseline")


def config_args(name: str) -> list[str]:
    """The loss's own yaml when it has one, else the triplet yaml with the loss swapped in."""
    if (CONFIG_DIR / "baselines" / f"{name}.yaml").is_file():
        return ["--cfg", f"baselines/{name}.yaml", "--set"]
    return ["--cfg", "baselines/triplet.yaml", "--set", f"baseline.loss={name}", "baseline.loss_kwargs={}"]


def run(tmp_path, name, *extra):
    return train_baseline.main([*config_args(name), *TINY, *extra, "--output-root", str(tmp_path),
                                "--no-tensorboard"])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_trains_on_digits(tmp_path, name):
    results = run(tmp_path, name)
    assert results["loss"] == name
    for key in ("knn_acc", "nmi", "acc", "ari"):
        assert 0.0 <= results[key] <= 1.0 or (key == "ari" and -1.0 <= results[key] <= 1.0)
    run_dir = Path(next(tmp_path.glob("*/*/results.json"))).parent
    records = read_metrics(run_dir)
    assert records[0]["stage"] == "baseline" and records[0]["steps"] == 2
    assert records[-1]["stage"] == "final"
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # weights_only
    assert state["kind"] == "baseline" and state["config"]["baseline"]["loss"] == name


def test_run_directory_and_training_changes_the_encoder(tmp_path):
    results = run(tmp_path, "triplet", "baseline.epochs=2")
    run_dir = Path(results["run_dir"])
    assert {"config.yaml", "metrics.jsonl", "results.json"} <= {p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "results.json").read_text())["knn_acc"] == results["knn_acc"]
    assert (run_dir.parent / "results.csv").is_file()
    saved = load_config(run_dir / "config.yaml")
    assert saved.baseline.loss == "triplet" and saved.baseline.epochs == 2
    from isl.builders import build_encoder_from_config
    torch.manual_seed(saved.seed)
    fresh = build_encoder_from_config(saved).state_dict()
    trained = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    assert any(not torch.equal(fresh[k], trained[k]) for k in fresh if fresh[k].is_floating_point())


def test_resume_continues_to_the_same_weights(tmp_path):
    straight = run(tmp_path / "a", "triplet", "baseline.epochs=2")
    first = run(tmp_path / "b", "triplet", "baseline.epochs=1")
    # resume the 1-epoch run under the 2-epoch config: the config check must refuse ...
    with pytest.raises(Exception, match="different config"):
        train_baseline.main([*config_args("triplet"), *TINY, "baseline.epochs=2", "--output-root",
                             str(tmp_path / "b"), "--no-tensorboard", "--resume", first["run_dir"]])
    # ... while an interrupted run (simulated: stop after epoch 1 of 2) resumes bit-identically
    from baselines.trainer import BaselineRun, run_baseline
    from isl.rundir import RunDir
    cfg = load_config("baselines/triplet.yaml", TINY + ["baseline.epochs=2"], output_root=str(tmp_path / "c"))
    rd = RunDir.create(cfg, enable_tensorboard=False)
    import baselines.trainer as trainer
    original = trainer.train_one_epoch
    calls = []

    def stop_after_one(s: BaselineRun, epoch: int):
        if calls:
            raise KeyboardInterrupt
        calls.append(epoch)
        return original(s, epoch)

    trainer.train_one_epoch = stop_after_one
    try:
        with pytest.raises(KeyboardInterrupt):
            run_baseline(cfg, rd)
    finally:
        trainer.train_one_epoch = original
    resumed = run_baseline(cfg, rd, resume=rd.checkpoint_path)
    a = load_checkpoint(Path(straight["run_dir"]) / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(rd.checkpoint_path)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["knn_acc"] == straight["knn_acc"]
    assert resumed["resumes"] == 1 and straight["resumes"] == 0  # the resume is on record, where it stood too
    from isl.rundir import read_metrics
    assert [r.get("at_epoch") for r in read_metrics(rd.path) if r["stage"] == "resume"] == [1]


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'triplet'"):
        run(tmp_path, "triplet", "baseline.loss=tripplet")
    with pytest.raises(ConfigError, match="m values that fit"):
        run(tmp_path, "triplet", "baseline.m_per_class=200")
    with pytest.raises(ConfigError, match="baseline.sampler"):
        run(tmp_path, "triplet", "baseline.sampler=shuffle")
    with pytest.raises(ConfigError, match="magnet_batch_clusters"):
        run(tmp_path, "magnet", "baseline.magnet_batch_clusters=5")
    with pytest.raises(ConfigError, match="the loss takes margin"):
        run(tmp_path, "triplet", "baseline.loss_kwargs.margn=0.1")
    with pytest.raises(ConfigError, match="takes no miner"):
        run(tmp_path, "ranked_list", "baseline.miner=semihard")
    with pytest.raises(ConfigError, match="Did you mean 'semihard'"):
        run(tmp_path, "triplet", "baseline.miner=semi_hard")


@pytest.mark.parametrize("miner", ["easy", "hard", "semihard", "batch_hard"])
def test_miners_run_in_the_trainer(tmp_path, miner):
    results = run(tmp_path, "triplet", f"baseline.miner={miner}")
    assert results["miner"] == miner


def test_non_finite_loss_stops_the_run(tmp_path):
    from baselines.trainer import NonFiniteLossError
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        run(tmp_path, "triplet", "optim.lr=1.0e+30", "baseline.epochs=2", "train.max_steps_per_epoch=5")


def test_trainer_fits_the_hierarchical_tree_from_the_training_set(tmp_path):
    results = run(tmp_path, "hierarchical_triplet")
    loss_state = load_checkpoint(Path(results["run_dir"]) / "checkpoints" / "last.pt")["loss"]
    assert bool(loss_state["tree_fitted"])
    spread = loss_state["class_spread"]
    assert spread.shape == (10,) and (spread > 0).all()  # every digit class measured, not just a batch's
