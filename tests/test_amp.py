"""Mixed precision (train.amp: auto | off | bf16 | fp16) and channels_last on CPU: the encoder runs in the low
precision, the memory bank, the objective and the losses stay float32, fp16's GradScaler is checkpointed."""
from __future__ import annotations

import math

import pytest
import torch

from isl.amp import Precision, _autocast_works, check_amp, resolve_precision
from isl import hardware
from isl.checkpoint import load_checkpoint
from isl.config import ConfigError, load_config
from isl.rundir import RunDir, read_metrics
from isl.train import ISLRun, StopRun, run_isl

from baseline_tool_helpers import TINY as BASELINE_TINY, load_tool
from test_train_isl import TINY

FP16_ON_CPU = _autocast_works("cpu", torch.float16)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _npid_cfg(tmp_path, *extra):
    return load_config("digits.yaml", TINY + ["isl.mining.strategy=none", "train.epochs_first=1", "isl.rounds=0",
                                              *extra], output_root=str(tmp_path / "runs"))


def _head_dtypes(monkeypatch) -> list:
    """Record the dtype of the encoder's projection-head output (inside autocast, before the float32 cast)."""
    seen, original = [], ISLRun.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.model.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    monkeypatch.setattr(ISLRun, "__init__", init)
    return seen


@pytest.mark.parametrize("amp, channels_last", [("bf16", False), ("bf16", True), ("fp16", False)])
def test_isl_trains_in_low_precision_with_a_float32_bank(tmp_path, monkeypatch, amp, channels_last):
    if amp == "fp16" and not FP16_ON_CPU:
        with pytest.raises(ConfigError, match="fp16 needs CUDA"):
            check_amp("fp16", torch.device("cpu"))
        return
    seen = _head_dtypes(monkeypatch)
    cfg = _npid_cfg(tmp_path, f"train.amp={amp}", f"train.channels_last={channels_last}")
    run = RunDir.create(cfg, enable_tensorboard=False)
    results = run_isl(cfg, run)
    assert DTYPES[amp] in seen                          # the encoder really ran in the low precision
    losses = [r["loss"] for r in read_metrics(run.path) if r["stage"] == "encoder"]
    assert losses and all(math.isfinite(v) for v in losses)
    assert 0.0 <= results["knn_acc"] <= 1.0
    state = load_checkpoint(run.checkpoint_path)
    assert state["bank"]["bank"].dtype == torch.float32
    assert torch.allclose(state["bank"]["bank"].norm(dim=1), torch.ones(1), atol=1e-5)
    assert ("scale" in state["scaler"]) == (amp == "fp16")  # only fp16 carries a GradScaler


@pytest.mark.skipif(not FP16_ON_CPU, reason="this torch cannot autocast to fp16 on CPU")
def test_fp16_scaler_state_is_restored_on_resume(tmp_path):
    cfg = _npid_cfg(tmp_path, "train.amp=fp16", "train.epochs_first=2")
    full = RunDir(tmp_path / "full", enable_tensorboard=False)
    run_isl(cfg, full)
    part = RunDir(tmp_path / "part", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, part, stop_after=1)
    saved = load_checkpoint(part.checkpoint_path)["scaler"]
    s = ISLRun(cfg, torch.device("cpu"))
    s.load_state_dict(load_checkpoint(part.checkpoint_path))
    assert s.scaler.state_dict() == saved and saved["_growth_tracker"] == 3  # 3 good steps counted
    run_isl(cfg, part, resume=part.checkpoint_path)
    a, b = load_checkpoint(full.checkpoint_path), load_checkpoint(part.checkpoint_path)
    assert a["scaler"] == b["scaler"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_bad_amp_values_are_one_line_errors():
    with pytest.raises(ConfigError, match="not one of auto, off, bf16, fp16"):
        load_config(None, ["train.amp=half"])
    with pytest.raises(ConfigError, match="train.channels_last='fast' is not one of auto, on, off"):
        load_config(None, ["train.channels_last=fast"])
    assert load_config(None, ["train.amp=off"]).train.amp == "off"  # yaml reads a bare off as false
    # the bools older run directories hold (and yaml's bare on / off) name the choices
    assert [load_config(None, [f"train.channels_last={v}"]).train.channels_last for v in ("true", "false", "on")] \
        == ["on", "off", "on"]
    assert load_config(None, []).train.amp == "off" and load_config(None, []).train.channels_last == "auto"


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_detected_hardware(monkeypatch, native):
    """auto: bf16 autocast where the CPU has native bf16 (detected from its flags), float32 elsewhere; channels_last
    on for the conv encoders on CPU; explicit choices are kept."""
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"} if native else {"avx2"}))
    cpu = torch.device("cpu")
    assert resolve_precision("auto", "auto", cpu) == Precision("bf16" if native else "off", True)
    assert resolve_precision("off", "off", cpu) == Precision("off", False)
    assert resolve_precision("bf16", "on", cpu) == Precision("bf16", True)
    assert hardware.native_bf16(cpu) == native


def test_results_record_the_precision_used(tmp_path):
    cfg = _npid_cfg(tmp_path, "train.amp=auto")
    results = run_isl(cfg, RunDir.create(cfg, enable_tensorboard=False))
    expected = resolve_precision("auto", "auto", torch.device("cpu"))
    assert (results["amp"], results["channels_last"]) == (expected.amp, expected.channels_last)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_baseline_trainer_uses_amp(tmp_path, amp):
    if amp == "fp16" and not FP16_ON_CPU:
        pytest.skip("this torch cannot autocast to fp16 on CPU (the ISL test checks the error)")
    tool = load_tool("train_baseline")
    results = tool.main(["--cfg", "baselines/triplet.yaml", "--set", *BASELINE_TINY, f"train.amp={amp}",
                         "--output-root", str(tmp_path), "--no-tensorboard"])
    run_dir = next(tmp_path.glob("*/*/results.json")).parent
    losses = [r["loss"] for r in read_metrics(run_dir) if r["stage"] == "baseline"]
    assert losses and all(math.isfinite(v) for v in losses) and 0.0 <= results["knn_acc"] <= 1.0
    assert ("scale" in load_checkpoint(run_dir / "checkpoints" / "last.pt")["scaler"]) == (amp == "fp16")
