"""Run directories: runs/<experiment>/<timestamp>/ with the resolved config, parseable logs and curves.

Contents: config.yaml (resolved, frozen), metrics.jsonl (one JSON object per line: every epoch record and
every evaluation), results.json (the final metrics), run.log (stdlib logging), TensorBoard event files, and
checkpoints/. Each finished run also appends one row to runs/<experiment>/results.csv. Metrics are keys,
never parts of file names.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, dump_yaml

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


class RunDir:
    """One run's output folder. Create with `RunDir.create(cfg)` or reopen with `RunDir(path)` (resume)."""

    def __init__(self, path: str | Path, enable_tensorboard: bool = True):
        self.path = Path(path)
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        self._tb = None
        self._tb_enabled = enable_tensorboard
        setup_logging(self.path / "run.log")

    @classmethod
    def create(cls, cfg: Config, timestamp: str | None = None, **kwargs) -> "RunDir":
        stamp = timestamp or time.strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.output_root) / cfg.experiment / stamp
        suffix = 1
        while path.exists():  # two runs started in the same second
            path = Path(cfg.output_root) / cfg.experiment / f"{stamp}-{suffix}"
            suffix += 1
        run = cls(path, **kwargs)
        (run.path / "config.yaml").write_text(dump_yaml(cfg))
        return run

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
        new = not table.exists()
        with open(table, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=sorted(results), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(results)
        return out

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


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

    def close(self) -> None:
        pass
