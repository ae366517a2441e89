"""Progress bars only where someone watches them: tqdm on a terminal, nothing in log files.

A bar redraws itself with carriage returns and escape codes; in a file (a sweep's per-run log, `> out.log`,
a batch job) that leaves hundreds of half lines per run with log lines glued to them. So bars are drawn only
when stderr is a terminal. $ISL_PROGRESS overrides the automatic choice: `off` (what `--no-progress` and
`--quiet` set, inherited by child processes) or `on` (force bars, e.g. under a terminal multiplexer that
hides the tty). run.log and metrics.jsonl never hold bars; the per-epoch INFO lines carry the progress.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm as _tqdm

ENV = "ISL_PROGRESS"  # auto (default) | on | off


def enabled() -> bool:
    """Whether bars are drawn: $ISL_PROGRESS on/off, else whether stderr is a terminal."""
    mode = os.environ.get(ENV, "auto").strip().lower()
    if mode in ("off", "0", "false", "no"):
        return False
    if mode in ("on", "1", "true", "yes"):
        return True
    return sys.stderr.isatty()


def tqdm(*args, **kwargs) -> _tqdm:
    """tqdm.tqdm, disabled unless `enabled()` (an explicit `disable=` wins)."""
    kwargs.setdefault("disable", not enabled())
    return _tqdm(*args, **kwargs)


def disable_progress() -> None:
    """No bars in this process and the processes it starts (--no-progress, --quiet)."""
    os.environ[ENV] = "off"
