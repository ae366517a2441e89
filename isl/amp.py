"""Mixed precision for the encoder (`train.amp: auto | off | bf16 | fp16`) and the channels_last layout.

`resolve_precision` turns the config's `auto`s into what a run uses (results.json records it): `train.amp=auto`
is bf16 where the device multiplies bf16 natively (isl/hardware.py: AMX / AVX512-BF16 CPUs, CUDA from Ampere on), float32
elsewhere, where emulated bf16 is slower than float32; channels_last for the conv encoders on CPU (oneDNN's
convolutions are faster in it in float32 and bf16: docs/scale.md) and on CUDA under amp (tensor cores).

Only the encoder's forward runs under autocast. Everything whose range or accumulation matters stays in
float32 outside it: the features are cast back (`f.float()`) before they meet the memory bank, so the bank
(a float32 buffer), the B x N logits, the objective's log_softmax / logsumexp, the baselines' losses, the GAN
and the miner never see half precision. fp16 needs a gradient scaler (its 5-bit exponent underflows small
gradients): `grad_scaler` returns torch.amp.GradScaler, whose state the trainers save in their checkpoints;
bf16 has float32's exponent and needs none (the scaler is then a disabled no-op with the same interface).
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch

from .config import ConfigError
from .hardware import native_bf16

AMP_MODES = ("auto", "off", "bf16", "fp16")
CHANNELS_LAST_MODES = ("auto", "on", "off")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """What a run computes in: `amp` (off | bf16 | fp16, never auto) and whether channels_last is used."""

    amp: str = "off"
    channels_last: bool = False

    def as_dict(self) -> dict:
        return {"amp": self.amp, "channels_last": self.channels_last}


@functools.cache
def _autocast_works(device_type: str, dtype: torch.dtype) -> bool:
    """Whether autocast on this device type actually casts a matmul to `dtype` (older CPU builds: bf16 only)."""
    try:
        with torch.autocast(device_type, dtype=dtype):
            out = torch.ones(2, 2, device=device_type) @ torch.ones(2, 2, device=device_type)
        return out.dtype == dtype
    except (RuntimeError, AssertionError):
        return False


def resolve_precision(amp: str, channels_last: str, device: torch.device) -> Precision:
    """train.amp and train.channels_last with their `auto`s decided for `device` (checked by `check_amp`)."""
    if amp == "auto":
        amp = "bf16" if native_bf16(device) and _autocast_works(device.type, torch.bfloat16) else "off"
    check_amp(amp, device)
    if channels_last not in CHANNELS_LAST_MODES:
        raise ConfigError(f"train.channels_last={channels_last!r} is not one of {', '.join(CHANNELS_LAST_MODES)}")
    if channels_last == "auto":  # every encoder of isl.models is convolutional
        on = device.type == "cpu" or (device.type == "cuda" and amp != "off")
    else:
        on = channels_last == "on"
    return Precision(amp, on)


def check_amp(mode: str, device: torch.device) -> None:
    """A ConfigError when `mode` is unknown or this device cannot autocast to it."""
    if mode not in AMP_MODES:
        raise ConfigError(f"train.amp={mode!r} is not one of {', '.join(AMP_MODES)}")
    if mode not in ("off", "auto") and not _autocast_works(device.type, DTYPES[mode]):
        raise ConfigError(f"train.amp={mode} is not supported by torch {torch.__version__} on {device.type}; "
                          f"use train.amp=bf16 or off on this device (fp16 needs CUDA here)")


def autocast(device: torch.device, mode: str):
    """torch.autocast to the configured dtype, or a null context for `off`."""
    if mode == "off":
        return contextlib.nullcontext()
    if mode not in DTYPES:
        raise ValueError(f"autocast needs a resolved mode (off | bf16 | fp16), got {mode!r}: see resolve_precision")
    return torch.autocast(device.type, dtype=DTYPES[mode])


def grad_scaler(device: torch.device, mode: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (disabled, scale/step/update are plain pass-throughs)."""
    return torch.amp.GradScaler(device.type, enabled=mode == "fp16")


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A 4-D image batch (or a model, through `.to`) in channels_last when asked; anything else unchanged."""
    if channels_last and (isinstance(x, torch.nn.Module) or x.dim() == 4):
        return x.to(memory_format=torch.channels_last)
    return x
