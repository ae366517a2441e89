"""Shared behaviour of the command-line tools: expected errors print one line and exit 2, not a traceback."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from .checkpoint import CheckpointError
from .config import ConfigError
from .data import DatasetCorruptedError, DatasetNotFoundError

USER_ERRORS = (ConfigError, CheckpointError, DatasetNotFoundError, DatasetCorruptedError)


def run_cli(main: Callable[[], object]) -> None:
    """Call `main()`; turn the errors a user can fix into a short message on stderr and exit code 2."""
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def add_run_arguments(parser, default_cfg: str) -> None:
    """The options every training tool shares: --cfg, --set, --resume, --data-root, --output-root."""
    parser.add_argument("--cfg", default=default_cfg, help="experiment yaml: a path or a name in configs/")
    parser.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. isl.gan.alpha=2.0 seed=1")
    parser.add_argument("--resume", default=None, metavar="auto|PATH",
                        help="auto = the newest run of this experiment; PATH = a checkpoint or run directory")
    parser.add_argument("--data-root", default=None, help="data folder (else $ISL_DATA_ROOT or ./data)")
    parser.add_argument("--output-root", default=None, help="runs folder (else $ISL_OUTPUT_ROOT or ./runs)")


def find_resume(cfg, resume: str) -> tuple[Path, Path]:
    """(run directory, checkpoint) for --resume auto|PATH."""
    if resume == "auto":
        found = list((Path(cfg.output_root) / cfg.experiment).glob("*/checkpoints/last.pt"))
        if not found:
            raise CheckpointError(f"--resume auto found no checkpoint under {Path(cfg.output_root) / cfg.experiment}"
                                  "/*/checkpoints/last.pt; start without --resume")
        ckpt = max(found, key=lambda p: p.stat().st_mtime)
    else:
        ckpt = Path(resume)
        if ckpt.is_dir():
            ckpt = ckpt / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            raise CheckpointError(f"--resume {resume}: no checkpoint at {ckpt}; give a checkpoints/last.pt file, "
                                  "its run directory, or 'auto'")
    return ckpt.parent.parent, ckpt
