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


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file in the same folder, then os.replace: a crash never leaves half a file.

    Every checkpoint records the code version that wrote it (`isl_version`, a plain string).
    """
    state = {**state, "isl_version": __version__}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pt"))
            hint = f"; checkpoints in {path.parent}: {', '.join(found) or 'none'}"
        raise CheckpointError(f"checkpoint {path} does not exist{hint}. Give the path of a .pt file written by "
                              f"this project (runs/<experiment>/<timestamp>/checkpoints/last.pt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated file, foreign pickle, ...
        raise CheckpointError(f"could not load checkpoint {path}: {err}") from err


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
