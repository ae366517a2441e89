"""Progress bars only where someone watches them: tqdm on a terminal, nothing in log files.

A bar redraws itself with carriage returns and escape codes; in a file (a sweep's per-run log, `> out.log`,
a batch job) that leaves hundreds of half lines per run with log lines glued to them. So bars are drawn only
when stderr is a terminal. $ISL_PROGRESS overrides the automatic choice: `off` (what `--no-progress` and
`--quiet` set, inherited by child processes) or `on` (force bars, e.g. under a terminal multiplexer that
hides the tty). run.log and metrics.jsonl never hold bars; the per-epoch INFO lines carry the progress.

Every epoch (and GAN epoch) logs one progress line (`epoch_line`: stage, round, epoch, loss, images/s, time per
epoch, the run's ETA) marked `extra=PROGRESS`: run.log always holds it, and the console shows it only when no
bar is drawn (`BarsShownFilter`), so a job whose output goes to a file still reports every epoch.
"""
from __future__ import annotations

import logging
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


PROGRESS = {"progress": True}  # `log.info(..., extra=PROGRESS)`: a line the bars already show on a terminal


class BarsShownFilter(logging.Filter):
    """For the console handler: drop progress lines while bars are drawn (they would break the bars)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(record, "progress", False) and enabled())


def format_duration(seconds: float) -> str:
    """12.3 -> '12s', 754 -> '12m34s', 7384 -> '2h03m'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def epoch_line(what: str, epoch: int, epochs: int, losses: dict[str, float], images_per_s: float, seconds: float,
               remaining_epochs: int) -> str:
    """'round 1 encoder epoch 3/6: loss 5.1234 (l1 5.0, l2 0.2) | 1,234 images/s, 45.2 s/epoch, ETA 3m01s'.

    The ETA counts the run's remaining encoder epochs (all rounds) at this epoch's pace; GAN and mining stages
    come on top (their own lines say what they cost)."""
    shown = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
    return (f"{what} epoch {epoch}/{epochs}: {shown} | {images_per_s:,.0f} images/s, {seconds:.1f} s/epoch, "
            f"ETA {format_duration(remaining_epochs * seconds)}")
