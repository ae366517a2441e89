"""Run directories: runs/<experiment>/<timestamp>/ with the resolved config, parseable logs and curves.

Contents: config.yaml (resolved, frozen), metrics.jsonl (one JSON object per line: every epoch record,
every evaluation and every resume), results.json (the final metrics), run.log (stdlib logging), TensorBoard event
files, and checkpoints/. Each finished run also appends one row to runs/<experiment>/results.csv. Metrics are keys,
never parts of file names.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, dump_yaml
from .progress import BarsShownFilter

log = logging.getLogger("isl")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def setup_logging(path: Path | None = None, level: int = logging.INFO, console_level: int | None = None) -> None:
    """stdlib logging to stderr (and to `path`), once per process; `console_level` (e.g. WARNING for
    --quiet) raises the threshold of the console only, run.log keeps every INFO line."""
    root = logging.getLogger("isl")
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = next((h for h in root.handlers if getattr(h, "_isl_console", False)), None)
    if console is None:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        console.addFilter(BarsShownFilter())  # per-epoch progress lines only where no bar shows them
        console._isl_console = True  # type: ignore[attr-defined]
        root.addHandler(console)
    if console_level is not None:
        console.setLevel(console_level)
    if path is not None:
        for h in list(root.handlers):
            if isinstance(h, logging.FileHandler):
                root.removeHandler(h)
                h.close()
        handler = logging.FileHandler(path)
        handler.setFormatter(fmt)
        root.addHandler(handler)


class RunDirError(RuntimeError):
    """A run directory that cannot be created or written (unwritable output root, ...); one line."""


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.endswith(b"\n"))


class RunDir:
    """One run's output folder. Create with `RunDir.create(cfg)` or reopen with `RunDir(path)` (resume).

    Opening a folder removes stale `checkpoints/*.tmp` files (a write killed half-way). `records` counts the
    lines of metrics.jsonl; `save_checkpoint` stores it in the checkpoint and `rewind_metrics` cuts the file back
    to it on resume, so a record logged after the last checkpoint is not repeated.
    """

    def __init__(self, path: str | Path, enable_tensorboard: bool = True):
        self.path = Path(path)
        try:
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
            for stale in (self.path / "checkpoints").glob("*.tmp"):
                stale.unlink(missing_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot use run directory {self.path}: {err.strerror or err}; choose a writable "
                              "--output-root (or $ISL_OUTPUT_ROOT)") from None
        self.records = _count_lines(self.path / "metrics.jsonl")
        self._tb = None
        self._tb_enabled = enable_tensorboard
        setup_logging(self.path / "run.log")

    @classmethod
    def create(cls, cfg: Config, timestamp: str | None = None, **kwargs) -> "RunDir":
        """A new folder runs/<experiment>/<timestamp>[-k], made with os.mkdir: two processes starting in the same
        second get two folders (the second takes the next free suffix), never a shared one."""
        stamp = timestamp or time.strftime("%Y%m%d-%H%M%S")
        parent = Path(cfg.output_root) / cfg.experiment
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for suffix in range(10_000):
                path = parent / (stamp if suffix == 0 else f"{stamp}-{suffix}")
                try:
                    os.mkdir(path)
                    break
                except FileExistsError:
                    continue
            else:
                raise RunDirError(f"{parent} already holds 10000 runs named {stamp}-*; choose another experiment name")
        except OSError as err:
            raise RunDirError(f"cannot create a run directory under {parent}: {err.strerror or err}; choose a "
                              "writable --output-root (or $ISL_OUTPUT_ROOT)") from None
        run = cls(path, **kwargs)
        (run.path / "config.yaml").write_text(dump_yaml(cfg))
        return run

    def discard_if_unstarted(self) -> bool:
        """Remove this folder when no checkpoint was written (a start that failed); True when removed."""
        if self.checkpoint_path.is_file():
            return False
        self.close()
        root = logging.getLogger("isl")
        for h in list(root.handlers):
            if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == self.path.resolve():
                root.removeHandler(h)
                h.close()
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            self.path.parent.rmdir()  # the experiment folder, when this was its only run
        except OSError:
            pass
        return True

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write `state` (plus the number of metrics.jsonl records so far) to checkpoints/last.pt, atomically."""
        from .checkpoint import save_checkpoint
        save_checkpoint(self.checkpoint_path, {**state, "metrics_records": self.records})

    def rewind_metrics(self, state: dict[str, Any]) -> None:
        """On resume: cut metrics.jsonl back to the records the checkpoint had seen (later ones are redone)."""
        keep = state.get("metrics_records")
        path = self.path / "metrics.jsonl"
        if keep is None:
            log.warning("the checkpoint does not record how many metrics.jsonl lines it had seen (older writer): "
                        "records after it may repeat")
            return
        if keep > self.records:
            log.warning("metrics.jsonl has %d records, fewer than the %d the checkpoint had seen; keeping them",
                        self.records, keep)
            return
        data = path.read_bytes() if path.is_file() else b""
        if keep == self.records and (not data or data.endswith(b"\n")):
            return
        lines = data.splitlines(keepends=True)[:keep]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(b"".join(lines))
        os.replace(tmp, path)
        log.info("metrics.jsonl rewound to the checkpoint's %d records (%d dropped)", keep, self.records - keep)
        self.records = keep

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def tb(self):
        if self._tb is None and self._tb_enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow import
            except ImportError:  # TensorBoard is optional: metrics.jsonl holds the same scalars
                log.warning("tensorboard is not installed: no event files in %s (pip install tensorboard, or "
                            "pass --no-tensorboard to silence this)", self.path)
                self._tb_enabled = False
                return None
            self._tb = SummaryWriter(str(self.path))
        return self._tb

    def log_metrics(self, record: dict[str, Any], step: int | None = None, prefix: str = "") -> None:
        """Append one JSON line to metrics.jsonl and the numeric values to TensorBoard at `step`."""
        record = {k: _jsonable(v) for k, v in record.items()}
        with open(self.path / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        self.records += 1
        if step is not None and self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("round", "epoch"):
                    self.tb.add_scalar(f"{prefix}{key}", value, step)

    def write_results(self, results: dict[str, Any]) -> Path:
        """results.json in the run dir (with `isl_version`), plus one row appended to runs/<experiment>/results.csv."""
        from .eval.report import write_json
        results = {k: _jsonable(v) for k, v in results.items()}
        results.setdefault("run_dir", str(self.path))
        results.setdefault("isl_version", __version__)  # the code that produced these numbers
        out = self.path / "results.json"
        write_json(out, results)
        table = self.path.parent / "results.csv"
        fields = sorted(results)
        if table.exists():  # a resumed finished run replaces its own row instead of adding a second one
            with open(table, newline="") as fh:
                reader = csv.DictReader(fh)
                fields, rows = reader.fieldnames or fields, list(reader)
            if any(r.get("run_dir") == results["run_dir"] for r in rows):
                tmp = table.with_name(table.name + ".tmp")
                with open(tmp, "w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(r for r in rows if r.get("run_dir") != results["run_dir"])
                os.replace(tmp, table)
        new = not table.exists() or table.stat().st_size == 0
        with open(table, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")  # the table's own columns
            if new:
                writer.writeheader()
            writer.writerow(results)
        return out

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def resume_record(checkpoint: str | Path, **where: Any) -> dict[str, Any]:
    """The metrics.jsonl record a trainer logs right after resuming: the checkpoint and where the run stood
    (`where` keys are prefixed with `at_`, e.g. at_round, at_epoch, at_elapsed_s). It follows the checkpoint's
    records, so a resume that dies before its next checkpoint is rewound away with the rest of that attempt."""
    return {"stage": "resume", "checkpoint": str(checkpoint), **{f"at_{k}": v for k, v in where.items()}}


def count_resumes(records: list[dict[str, Any]]) -> int:
    """How many resumes a run's metrics.jsonl records (results.json's `resumes`)."""
    return sum(1 for r in records if r.get("stage") == "resume")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl (path = run dir or the file)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]



class FollowerRunDir:
    """The run directory as ranks > 0 see it under torchrun: the same path, nothing written (rank 0 writes
    config.yaml, metrics.jsonl, TensorBoard, checkpoints and results)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def log_metrics(self, record: dict[str, Any], step: int | None = None, prefix: str = "") -> None:
        pass

    def write_results(self, results: dict[str, Any]) -> Path:
        return self.path / "results.json"

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        pass

    def rewind_metrics(self, state: dict[str, Any]) -> None:
        pass

    def discard_if_unstarted(self) -> bool:
        return False

    def close(self) -> None:
        pass
