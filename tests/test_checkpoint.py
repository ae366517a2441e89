"""Checkpoints: atomic, fsynced writes; a failed write keeps the previous file; a truncated file, another format,
a missing key, progress field, RNG entry or tensor, and a tensor of another shape are each one CheckpointError
line that says what differs (ISL and baseline runs); nothing resumes with defaults."""
from __future__ import annotations

import copy
import errno
import os

import pytest
import torch

from baselines.trainer import BaselineRun
from isl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from isl.config import load_config
from isl.train import CHECKPOINT_FORMAT, ISLRun

SMALL = ["model.low_dim=8", "eval.knn_k=5", "train.batch_size=32"]


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_save_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.path.realpath(f"/proc/self/fd/{fd}")), real(fd)))
    save_checkpoint(tmp_path / "ck" / "last.pt", {"x": torch.ones(3)})
    assert any(p.endswith("last.pt.tmp") for p in synced) and str((tmp_path / "ck").resolve()) in synced
    assert load_checkpoint(tmp_path / "ck" / "last.pt")["x"].sum() == 3
    assert not list((tmp_path / "ck").glob("*.tmp"))


def test_a_failed_write_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device; the previous checkpoint is kept") as err:
        save_checkpoint(path, {"step": 2})
    one_line(err)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1 and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_a_truncated_file_is_one_line_naming_it(tmp_path, keep):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"w": torch.randn(64, 64)})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="could not load checkpoint .*last.pt") as err:
        load_checkpoint(path)
    one_line(err)


@pytest.fixture(scope="module")
def isl_run():
    run = ISLRun(load_config("digits.yaml", SMALL), torch.device("cpu"))
    return run, run.state_dict()


def _drop(d, *path):
    for key in path[:-1]:
        d = d[key]
    del d[path[-1]]


ISL_CASES = [  # (id, change to a fresh state, the line says)
    ("format_1", lambda s: s.pop("format"), f"checkpoint from format 1, this code reads {CHECKPOINT_FORMAT}; resume "
                                            "is not possible, start a new run or use tools/export.py"),
    ("no_config", lambda s: s.pop("config"), "checkpoint lacks 'config'"),
    ("no_bank", lambda s: s.pop("bank"), "checkpoint lacks 'bank'"),
    ("missing_progress_field", lambda s: _drop(s, "progress", "gan_epochs"),
     "checkpoint lacks progress field 'gan_epochs'"),
    ("extra_progress_field", lambda s: s["progress"].update(stage_seconds=1.0),
     "progress field 'stage_seconds' that this code does not know"),
    ("missing_rng_entry", lambda s: _drop(s, "rng", "numpy_keys"), "checkpoint's rng lacks 'numpy_keys'"),
    ("missing_tensor", lambda s: _drop(s, "model", next(iter(s["model"]))), "checkpoint's model lacks tensor"),
    ("extra_tensor", lambda s: s["D"].update(extra=torch.zeros(1)), "checkpoint's D has tensor(s) extra"),
    ("bank_of_another_size", lambda s: s["bank"].update(bank=s["bank"]["bank"][:-10]),
     "bank.bank is 1427 x 8 in the checkpoint, this run has 1437 x 8"),
    ("positives_of_another_size", lambda s: s["positives"].update(indptr=s["positives"]["indptr"][:-3]),
     "positives.indptr is 1435 in the checkpoint, this run has 1438"),
    ("optimizer_groups", lambda s: s["opt_g"]["param_groups"].append(s["opt_g"]["param_groups"][0]),
     "checkpoint's opt_g has parameter groups"),
    ("no_early_stopping_field", lambda s: _drop(s, "gan_stopper", "bad_steps"),
     "checkpoint lacks gan_stopper field 'bad_steps'"),
]


@pytest.mark.parametrize("change, says", [c[1:] for c in ISL_CASES], ids=[c[0] for c in ISL_CASES])
def test_isl_checkpoint_mismatch_is_one_line(isl_run, change, says):
    run, state = isl_run
    state = copy.deepcopy(state)
    change(state)
    with pytest.raises(CheckpointError) as err:
        run.load_state_dict(state)
    assert says in one_line(err)


def test_isl_state_round_trips(isl_run, tmp_path):
    run, state = isl_run
    save_checkpoint(tmp_path / "s.pt", state)
    run.load_state_dict(load_checkpoint(tmp_path / "s.pt"))


@pytest.mark.parametrize("change, says", [
    (lambda s: _drop(s, "progress", "epoch"), "checkpoint lacks progress field 'epoch'"),
    (lambda s: s.update(format=7), "checkpoint from format 7, this code reads 1"),
    (lambda s: s.pop("loss"), "checkpoint lacks 'loss'"),
    (lambda s: s["model"].update({k: v[:1] for k, v in list(s["model"].items())[:1]}), "in the checkpoint, this run"),
], ids=["missing_progress_field", "format", "no_loss", "tensor_shape"])
def test_baseline_checkpoint_mismatch_is_one_line(change, says):
    cfg = load_config("baselines/triplet.yaml", SMALL + ["baseline.m_per_class=4"])
    run = BaselineRun(cfg, torch.device("cpu"))
    state = run.state_dict()
    assert "format" in state
    format_less = {k: v for k, v in copy.deepcopy(state).items() if k != "format"}
    run.load_state_dict(format_less)  # checkpoints written before the format key: the same layout, format 1
    change(state)
    with pytest.raises(CheckpointError) as err:
        run.load_state_dict(state)
    assert says in one_line(err)


def test_non_finite_buffers_stop_a_baseline_before_its_checkpoint(tmp_path, monkeypatch):
    """A finite loss can leave non-finite BatchNorm running statistics; the run stops before it saves them."""
    from baselines import trainer
    from isl.rundir import RunDir
    from isl.training import NonFiniteLossError

    cfg = load_config("baselines/triplet.yaml", SMALL + ["baseline.m_per_class=4", "baseline.epochs=2",
                                                         "train.max_steps_per_epoch=1", "model.arch=resnet18"],
                      output_root=str(tmp_path))
    original = trainer.train_one_epoch

    def poison(s, epoch):
        stats = original(s, epoch)
        if epoch == 1:
            bn = next(m for m in s.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var[0] = float("inf")
        return stats

    monkeypatch.setattr(trainer, "train_one_epoch", poison)
    run = RunDir.create(cfg, enable_tensorboard=False)
    with pytest.raises(NonFiniteLossError, match=r"non-finite values in model\..*running_var after epoch 2"):
        trainer.run_baseline(cfg, run)
    assert load_checkpoint(run.checkpoint_path)["progress"]["epoch"] == 1
