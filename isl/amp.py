"""Mixed precision for the encoder (`train.amp: off | bf16 | fp16`) and the channels_last layout.

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

import torch

from .config import ConfigError

AMP_MODES = ("off", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def _autocast_works(device_type: str, dtype: torch.dtype) -> bool:
    """Whether autocast on this device type actually casts a matmul to `dtype` (older CPU builds: bf16 only)."""
    try:
        with torch.autocast(device_type, dtype=dtype):
            out = torch.ones(2, 2, device=device_type) @ torch.ones(2, 2, device=device_type)
        return out.dtype == dtype
    except (RuntimeError, AssertionError):
        return False


def check_amp(mode: str, device: torch.device) -> None:
    """A ConfigError when `mode` is unknown or this device cannot autocast to it."""
    if mode not in AMP_MODES:
        raise ConfigError(f"train.amp={mode!r} is not one of {', '.join(AMP_MODES)}")
    if mode != "off" and not _autocast_works(device.type, DTYPES[mode]):
        raise ConfigError(f"train.amp={mode} is not supported by torch {torch.__version__} on {device.type}; "
                          f"use train.amp=bf16 or off on this device (fp16 needs CUDA here)")


def autocast(device: torch.device, mode: str):
    """torch.autocast to the configured dtype, or a null context for `off`."""
    if mode == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[mode])


def grad_scaler(device: torch.device, mode: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (disabled, scale/step/update are plain pass-throughs)."""
    return torch.amp.GradScaler(device.type, enabled=mode == "fp16")


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A 4-D image batch (or a model, through `.to`) in channels_last when asked; anything else unchanged."""
    if channels_last and (isinstance(x, torch.nn.Module) or x.dim() == 4):
        return x.to(memory_format=torch.channels_last)
    return x
