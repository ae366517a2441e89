"""Checkpoints: state_dicts, tensors and plain values only, written atomically, loaded with weights_only=True.

A checkpoint never pickles a module or an optimizer object (the reference code did, so its checkpoints cannot
be loaded safely). The caller rebuilds objects from the saved config, then loads their state.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not match the current config."""


def _fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power cut (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file in the same folder, fsync it, os.replace, fsync the folder: a crash or a power
    cut leaves the previous checkpoint or the new one, never half a file. A failed write (disk full, no
    permission) is a one-line CheckpointError; the temp file is removed and the previous checkpoint kept.

    Every checkpoint records the code version that wrote it (`isl_version`, a plain string).
    """
    state = {**state, "isl_version": __version__}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        kept = "the previous checkpoint is kept" if path.is_file() else "no checkpoint was written"
        reason = err.strerror or str(err).splitlines()[0]
        raise CheckpointError(f"could not write checkpoint {path}: {reason}; {kept}. Free disk space or fix the "
                              "folder's permissions, then resume with --resume auto") from None
    _fsync_dir(path.parent)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's dict (weights_only); a missing, truncated or foreign file is a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pt"))
            hint = f"; checkpoints in {path.parent}: {', '.join(found) or 'none'}"
        raise CheckpointError(f"checkpoint {path} does not exist{hint}. Give the path of a .pt file written by "
                              f"this project (runs/<experiment>/<timestamp>/checkpoints/last.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated file, foreign pickle, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"could not load checkpoint {path} ({path.stat().st_size} bytes; truncated or not "
                              f"written by this project?): {first}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of state: not a "
                              "checkpoint of this project")
    return state


def load_saved_run(path: str | Path, map_location: str | torch.device = "cpu"):
    """(state, Config) of any checkpoint of this project (ISL or a baseline) for the tools that read only its
    encoder (evaluate, probe, export, report): 'config' and 'model' must be there and the config must load."""
    from .config import ConfigError, from_dict
    state = load_checkpoint(path, map_location)
    check_keys(state, ("config", "model"), f"checkpoint {path}")
    try:
        return state, from_dict(state["config"])
    except (ConfigError, TypeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {path}: its saved config does not load in this version ({err}); use "
                              "the code version that wrote it (isl_version "
                              f"{state.get('isl_version', 'unknown')})") from None


# ---------------------------------------------------------------- what a loaded checkpoint must hold

def check_format(state: dict, expected: int) -> None:
    """A checkpoint's "format" must be the one this code writes (no key: format 1, the first layout)."""
    found = state.get("format", 1)
    if found != expected:
        raise CheckpointError(f"checkpoint from format {found}, this code reads {expected}; resume is not possible, "
                              "start a new run or use tools/export.py (the encoder alone)")


def check_keys(state: dict, keys, what: str = "checkpoint") -> None:
    """Every key in `keys` is present in `state` (extra keys are allowed: they are added by newer writers)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} is a {type(state).__name__}, not a dict: written by another version or damaged")
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{what} lacks {', '.join(repr(k) for k in missing)}: written by another version or "
                              "damaged; start a new run without --resume")


def check_fields(saved: dict, expected, what: str) -> None:
    """A plain record (progress counters) must have exactly the expected fields: no silent defaults."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint's {what} is a {type(saved).__name__}, not a record of fields")
    expected = list(expected)
    missing = [k for k in expected if k not in saved]
    extra = sorted(k for k in saved if k not in expected)
    if missing:
        raise CheckpointError(f"checkpoint lacks {what} field {', '.join(repr(k) for k in missing)}; it was written "
                              "by another version: start a new run without --resume")
    if extra:
        raise CheckpointError(f"checkpoint has {what} field {', '.join(repr(k) for k in extra)} that this code does "
                              "not know; it was written by another version: start a new run without --resume")


def _shape(t: torch.Tensor) -> str:
    return " x ".join(str(d) for d in t.shape) or "a scalar"


def check_tensors(name: str, saved: Any, current: dict, variable: tuple[str, ...] = ()) -> None:
    """A saved state_dict has the current object's tensor names and shapes (names in `variable` may differ in
    size, e.g. the edge list of the positive sets); says the first difference in one line."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint's {name} is a {type(saved).__name__}, not a state_dict")
    missing = [k for k in current if k not in saved]
    extra = [k for k in saved if k not in current]
    if missing:
        raise CheckpointError(f"checkpoint's {name} lacks tensor(s) {', '.join(missing[:4])}"
                              f"{' ...' if len(missing) > 4 else ''}: another model or code version; start a new run")
    if extra:
        raise CheckpointError(f"checkpoint's {name} has tensor(s) {', '.join(extra[:4])}"
                              f"{' ...' if len(extra) > 4 else ''} that this run does not: another model or code "
                              "version; start a new run")
    for key, now in current.items():
        old = saved[key]
        if key in variable or not isinstance(now, torch.Tensor):
            continue
        if not isinstance(old, torch.Tensor) or old.shape != now.shape:
            found = _shape(old) if isinstance(old, torch.Tensor) else type(old).__name__
            raise CheckpointError(f"{name}.{key} is {found} in the checkpoint, this run has {_shape(now)} (another "
                                  "data set, split, model.arch or model.low_dim?); resume with the same config")


def load_module_state(module: torch.nn.Module, saved: Any, name: str, variable: tuple[str, ...] = ()) -> None:
    """check_tensors against `module`, then load it (strict)."""
    check_tensors(name, saved, module.state_dict(), variable)
    module.load_state_dict(saved)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: Any, name: str) -> None:
    """An optimizer's state_dict with the same parameter groups (sizes) as this run's; one line otherwise."""
    if not isinstance(saved, dict) or "param_groups" not in saved or "state" not in saved:
        raise CheckpointError(f"checkpoint's {name} is not an optimizer state_dict; start a new run")
    old = [len(g["params"]) for g in saved["param_groups"]]
    now = [len(g["params"]) for g in optimizer.param_groups]
    if old != now:
        raise CheckpointError(f"checkpoint's {name} has parameter groups of sizes {old}, this run {now}: another "
                              "model or loss; resume with the same config")
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint's {name} does not fit this run: {str(err).splitlines()[0]}") from None


RNG_KEYS = ("torch", "python", "numpy_keys", "numpy_pos", "numpy_gauss")


def rng_state() -> dict[str, Any]:
    """Every global RNG the training loop touches, as tensors (weights_only-loadable)."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor([py[0], *py[1], -1 if py[2] is None else 0], dtype=torch.int64),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor(np_state[4], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    check_keys(state, RNG_KEYS, "checkpoint's rng")
    torch.set_rng_state(state["torch"])
    py = state["python"].tolist()
    random.setstate((py[0], tuple(py[1:-1]), None))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         int(state["numpy_pos"][0]), int(state["numpy_pos"][1]), float(state["numpy_gauss"])))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
