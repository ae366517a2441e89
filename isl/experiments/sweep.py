"""Sweeps: a base experiment, a grid of dotted config keys, seeds -> one training run per (combination, seed).

Used for the alpha / r / h ablations of ISL (Wang et al., ICCV 2021: alpha weights the (a, p, g) GAN terms,
r -> `isl.mining.radius`, h -> `isl.mining.threshold`) and, with the grid key `isl.mining.strategy`, for the
ISL / knn mining / NPID comparison. Any key of `isl.config.Config` can be swept.

Layout of a sweep folder <out>:
    sweep.json                      the resolved sweep (cfg, grid, seeds, fixed overrides, tool)
    runs/<combo>/seed=<s>/...       each run's --output-root; the tool writes <experiment>/<timestamp>/ below it
    logs/<combo>__seed=<s>.log      stdout + stderr of every attempt of that run
    summary.json                    what ran, what was skipped, what failed

A run is finished when a results.json exists below its folder: finished runs are skipped (resumable). While a
sweep process works on a run it holds an exclusive lock on <out>/runs/<combo>/seed=<s>/.lock (filelock: flock on
POSIX, msvcrt.locking on Windows; the operating system drops it when the process ends, so a killed sweep leaves no
stale lock); a second sweep over the
same folder skips that run as "busy" instead of training it twice into the same folder. A run
that exits non-zero or writes no results.json is tried once more, then reported as failed; the sweep goes on
with the others. For train_isl / train_baseline an attempt continues a checkpoint left by an earlier attempt
(`--resume auto`); an attempt after a failed resume starts afresh.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml
from filelock import FileLock, Timeout

from isl.cli import baseline_data_base
from isl.config import ConfigError, load_config, resolve_config_path

from .collect import short_names

ROOT = Path(__file__).resolve().parents[2]  # the checkout (or site-packages): put on the runs' PYTHONPATH
# run as `python -m <module>`, so a sweep works from a checkout and after a plain `pip install .`
TOOLS: dict[str, str | Path] = {"train_isl": "isl.tools.train_isl", "train_baseline": "isl.tools.train_baseline"}
RESUMABLE_TOOLS = ("train_isl", "train_baseline")  # tools that accept `--resume auto`
SWEEP_KEYS = ("cfg", "grid", "variants", "seeds", "set", "tool", "out", "name", "workers", "timeout", "data")


class SweepError(ConfigError):
    """A sweep that cannot run as written; the message says how to fix it."""


@dataclass
class Sweep:
    cfg: str                                   # base experiment yaml (path or name in configs/)
    grid: dict[str, list]                      # dotted key -> values, in the order given
    seeds: list[int] = field(default_factory=lambda: [0])
    fixed: list[str] = field(default_factory=list)  # dotted overrides of every run ("train.epochs_first=20")
    tool: str = "train_isl"                    # train_isl | train_baseline | path/to/script.py | dotted.module
    out: str = "runs/ablations/sweep"
    data: str | None = None                    # train_baseline only: --data NAME (configs/baselines/datasets/)
    variants: dict[str, list[str]] = field(default_factory=dict)  # name -> overrides, swept as the key "variant"
    variant_cfgs: dict[str, str] = field(default_factory=dict)    # name -> its own base yaml (else `cfg`)


@dataclass(frozen=True)
class RunSpec:
    combo: tuple[tuple[str, Any], ...]         # (dotted key, value) in grid order; ("variant", name) first
    seed: int
    name: str                                  # the combination's folder name
    extra: tuple[str, ...] = ()                # the variant's overrides
    cfg: str | None = None                     # the variant's own base yaml (None: the sweep's)

    @property
    def label(self) -> str:
        return f"{self.name}__seed={self.seed}"

    def overrides(self, fixed: list[str]) -> list[str]:
        return (list(fixed) + list(self.extra) + [f"{k}={format_value(v)}" for k, v in self.combo if k != "variant"]
                + [f"seed={self.seed}"])


def format_value(value: Any) -> str:
    """A value as override text that yaml parses back to the same value (0.5 -> '0.5', True -> 'true')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def parse_grid_arg(text: str) -> tuple[str, list]:
    """'isl.gan.alpha=0.5,1,2' -> ('isl.gan.alpha', [0.5, 1, 2]); each value is parsed as yaml."""
    if "=" not in text:
        raise SweepError(f"grid entry {text!r} must look like section.key=v1,v2,... (e.g. isl.gan.alpha=0.5,1,2)")
    key, raw = text.split("=", 1)
    values = [yaml.safe_load(v) for v in raw.split(",") if v.strip()]
    if not key.strip() or not values:
        raise SweepError(f"grid entry {text!r} needs a key and at least one value")
    return key.strip(), values


def combo_name(combo: tuple[tuple[str, Any], ...]) -> str:
    """Folder name of a combination, short key names: 'alpha=0.5_radius=0.632_threshold=0.5'."""
    names = short_names([k for k, _ in combo])
    text = "_".join(f"{names[k]}={format_value(v)}" for k, v in combo) or "base"
    return re.sub(r"[^\w.=+-]", "-", text)


def parse_variants(raw: Any) -> tuple[dict[str, list[str]], dict[str, str]]:
    """A sweep file's `variants:` -> (name -> overrides, name -> own base yaml). Each variant is a list of
    KEY=VALUE overrides, or a mapping {cfg: BASE.yaml, set: [KEY=VALUE, ...]} when it starts from another
    config (e.g. one supervised loss per variant: cfg: baselines/proxy_anchor.yaml)."""
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise SweepError(f"`variants:` must map names to override lists, got {type(raw).__name__}")
    variants, cfgs = {}, {}
    for name, value in raw.items():
        name = str(name)
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"cfg", "set"})
            if unknown:
                raise SweepError(f"variant {name!r}: unknown keys {unknown}; a variant mapping has `cfg` and `set`")
            if value.get("cfg"):
                cfgs[name] = str(value["cfg"])
            value = value.get("set") or []
        if not isinstance(value, (list, tuple)):
            raise SweepError(f"variant {name!r} must be a list of KEY=VALUE overrides (or a mapping with `cfg` and "
                             f"`set`), got {value!r}")
        variants[name] = [str(o) for o in value]
    return variants, cfgs


def expand(grid: dict[str, list], seeds: list[int], variants: dict[str, list[str]] | None = None,
           variant_cfgs: dict[str, str] | None = None) -> list[RunSpec]:
    """Cartesian product of the variants (named override lists, slowest) and the grid values (first key
    slowest), each combination once per seed."""
    variants, variant_cfgs = variants or {}, variant_cfgs or {}
    for name, overrides in variants.items():
        if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise SweepError(f"variant {name!r} must be a list of KEY=VALUE overrides, got {overrides!r}")
        clash = sorted({o.split("=", 1)[0].strip() for o in overrides} & set(grid))
        if clash:
            raise SweepError(f"variant {name!r} sets {clash}, which the grid also sweeps; keep each key in one place")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid key {key!r} needs a non-empty list of values, got {values!r}")
        if len({format_value(v) for v in values}) != len(values):
            raise SweepError(f"grid key {key!r} lists a value twice: {values!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds must be a non-empty list of distinct integers, got {seeds!r}")
    keys = list(grid)
    specs = []
    for variant in list(variants) or [None]:
        head = (("variant", variant),) if variant is not None else ()
        extra = tuple(variants[variant]) if variant is not None else ()
        for values in itertools.product(*(grid[k] for k in keys)):
            combo = head + tuple(zip(keys, values))
            specs.extend(RunSpec(combo, int(seed), combo_name(combo), extra, variant_cfgs.get(variant))
                         for seed in seeds)
    return specs


def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """Read a sweep yaml (keys: cfg, grid, seeds, set, tool, out, name, workers, timeout)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {path} not found (sweep files live in configs/ablations/)")
    with open(path) as fh:
        spec = yaml.safe_load(fh) or {}
    unknown = sorted(set(spec) - set(SWEEP_KEYS)) if isinstance(spec, dict) else ["<not a mapping>"]
    if unknown:
        raise SweepError(f"{path}: unknown sweep keys {unknown}; valid keys: {', '.join(SWEEP_KEYS)}")
    if "cfg" not in spec or not (spec.get("grid") or spec.get("variants")):
        raise SweepError(f"{path}: a sweep needs a base `cfg` and a `grid` and/or `variants`")
    spec.setdefault("name", path.stem)
    return spec


def validate(sweep: Sweep, specs: list[RunSpec]) -> None:
    """Build the config of every run with `load_config`: unknown keys and bad values fail before anything runs."""
    if "seed" in sweep.grid:
        raise SweepError("sweep seeds with --seeds (or `seeds:` in the sweep file), not as a grid key")
    fixed_keys = {o.split("=", 1)[0].strip() for o in sweep.fixed}
    clash = sorted(fixed_keys & set(sweep.grid))
    if clash:
        raise SweepError(f"{clash} are both swept (grid) and fixed (set); keep each key in one place")
    if sweep.data and sweep.tool != "train_baseline":
        raise SweepError(f"data: {sweep.data} selects a baseline data-set base file; it needs tool train_baseline "
                         f"(an ISL sweep names its data set in its cfg, e.g. cifar10.yaml)")
    try:
        base = baseline_data_base(sweep.data)
    except ConfigError as err:
        raise SweepError(str(err)) from None
    check_tool = None
    if sweep.tool == "train_baseline":  # the baseline section's names and loss arguments too
        from baselines.trainer import check_baseline_config as check_tool
    for spec in specs:
        try:
            cfg = load_config(spec.cfg or sweep.cfg, spec.overrides(sweep.fixed), base=base)
            if check_tool is not None:
                check_tool(cfg)
        except ConfigError as err:
            raise SweepError(f"run {spec.label} of the sweep over {spec.cfg or sweep.cfg}: {err}") from None


def tool_command(tool: str) -> list[str]:
    """The interpreter command that runs a tool: a name in TOOLS, a .py file, or a dotted module (python -m)."""
    tool = str(TOOLS.get(tool, tool))
    if tool.endswith(".py"):
        if not Path(tool).is_file():
            raise SweepError(f"tool script {tool} not found; give train_isl, train_baseline, a .py path or a module")
        return [sys.executable, str(Path(tool).resolve())]
    if re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*", tool):
        return [sys.executable, "-m", tool]
    raise SweepError(f"tool {tool!r} is neither one of {sorted(TOOLS)}, a .py path nor a dotted module name")


def finished_results(run_root: Path) -> Path | None:
    found = sorted(run_root.rglob("results.json")) if run_root.is_dir() else []
    return found[-1] if found else None


def _last_epoch(run_root: Path) -> int | None:
    """The last global epoch a checkpointed (unfinished) attempt logged in its metrics.jsonl, or None. Parsed
    line by line rather than with rundir.read_metrics: a killed attempt can leave a truncated last line."""
    last = None
    for log in sorted(run_root.rglob("metrics.jsonl")):
        try:
            lines = log.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                epoch = json.loads(line).get("global_epoch")
            except (ValueError, AttributeError):
                continue
            if isinstance(epoch, int):
                last = epoch if last is None else max(last, epoch)
    return last


LOCK_NAME = ".lock"


@contextmanager
def run_lock(run_root: Path) -> Iterator[bool]:
    """Hold the run's exclusive lock for the duration of the block; yields False (and holds nothing) when another
    process (or another open of the lock file in this one) holds it. The operating system releases the lock when
    the holder closes the file or dies, so a killed sweep leaves no stale lock."""
    run_root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_root / LOCK_NAME, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:   # held elsewhere
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def is_running(run_root: Path) -> bool:
    """Whether another process holds the run's lock now (a sweep is training it)."""
    if not (run_root / LOCK_NAME).is_file():
        return False
    with run_lock(run_root) as held:
        return not held


def run_state(sweep: Sweep, spec: RunSpec) -> tuple[str, float | None, int | None]:
    """Where one (combination, seed) stands: ("finished", wall time in s, epochs trained) as its results.json
    records them (None where absent), ("running", None, the last epoch it logged) while another sweep process
    holds its lock, ("resumable", None, the last epoch it logged) when an earlier attempt left a checkpoint, or
    ("to run", None, None)."""
    run_root = Path(sweep.out) / "runs" / spec.name / f"seed={spec.seed}"
    results = finished_results(run_root)
    if results:
        try:
            record = json.loads(results.read_text())
        except (OSError, ValueError):
            record = {}
        seconds, epochs = record.get("wall_time_s"), record.get("epochs")
        return ("finished", float(seconds) if isinstance(seconds, (int, float)) else None,
                epochs if isinstance(epochs, int) else None)
    if is_running(run_root):
        return "running", None, _last_epoch(run_root)
    if run_root.is_dir() and any(run_root.rglob("checkpoints/last.pt")):
        return "resumable", None, _last_epoch(run_root)
    return "to run", None, None


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def plan(sweep: Sweep, specs: list[RunSpec], workers: int = 1) -> dict[str, Any]:
    """The state of every run and an estimate of the time the unfinished ones need: the mean wall time of the
    finished runs of the same combination (else of all finished runs), for a running or resumable run times the
    share of the epochs it has left (its last logged epoch against the finished runs' epochs), divided among
    `workers` (a planning number: parallel runs on shared cores each take longer)."""
    states = {spec.label: run_state(sweep, spec) for spec in specs}
    times: dict[str, list[float]] = {}
    epochs: dict[str, list[float]] = {}
    for spec in specs:
        state, seconds, n_epochs = states[spec.label]
        if state == "finished":
            if seconds is not None:
                times.setdefault(spec.name, []).append(seconds)
            if n_epochs:
                epochs.setdefault(spec.name, []).append(n_epochs)
    every_time = [t for ts in times.values() for t in ts]
    every_epochs = [e for es in epochs.values() for e in es]
    estimate, unknown = 0.0, 0
    for spec in specs:
        state, _, done = states[spec.label]
        if state == "finished":
            continue
        seconds = _mean(times.get(spec.name) or every_time)
        if seconds is None:
            unknown += 1
            continue
        total = _mean(epochs.get(spec.name) or every_epochs)
        left = 1.0 if state == "to run" or not done or not total else max(0.0, 1.0 - done / total)
        estimate += seconds * left
    counts = {k: sum(1 for s, _, _ in states.values() if s == k) for k in ("finished", "running", "resumable", "to run")}
    return {"states": {label: state for label, (state, _, _) in states.items()}, "counts": counts,
            "estimate_s": estimate / max(1, workers), "unestimated": unknown}


def _attempt(cmd: list[str], log_path: Path, env: dict, timeout: float | None, attempt: int) -> int:
    with open(log_path, "a") as fh:
        fh.write(f"===== attempt {attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n")
        fh.flush()
        try:
            return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout,
                                  cwd=os.getcwd()).returncode
        except subprocess.TimeoutExpired:
            fh.write(f"\n===== attempt {attempt} killed after the {timeout} s timeout\n")
            return -9


def run_one(sweep: Sweep, spec: RunSpec, env: dict, data_root: str | None = None,
            timeout: float | None = None, attempts: int = 2) -> dict[str, Any]:
    """Run one (combination, seed) unless finished or held by another sweep process ("busy"); retry once.
    Returns its summary entry."""
    run_root = Path(sweep.out) / "runs" / spec.name / f"seed={spec.seed}"
    entry = {"run": spec.label, "combo": dict(spec.combo), "seed": spec.seed, "run_root": str(run_root)}
    done = finished_results(run_root)
    if done:
        return {**entry, "status": "skipped", "results": str(done)}
    with run_lock(run_root) as held:
        if not held:
            return {**entry, "status": "busy"}
        return _run_attempts(sweep, spec, entry, run_root, env, data_root, timeout, attempts)


def _run_attempts(sweep: Sweep, spec: RunSpec, entry: dict[str, Any], run_root: Path, env: dict,
                  data_root: str | None, timeout: float | None, attempts: int) -> dict[str, Any]:
    out = Path(sweep.out)
    done = finished_results(run_root)   # another sweep may have finished it between the first check and the lock
    if done:
        return {**entry, "status": "skipped", "results": str(done)}
    log_path = out / "logs" / f"{spec.label}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start, rc, resumed = time.perf_counter(), None, False
    for attempt in range(1, attempts + 1):
        cmd = tool_command(sweep.tool) + ["--cfg", str(resolve_config_path(spec.cfg or sweep.cfg).resolve()),
                                          "--output-root", str(run_root.resolve())]
        if data_root:
            cmd += ["--data-root", data_root]
        if sweep.data:
            cmd += ["--data", sweep.data]
        if sweep.tool in RESUMABLE_TOOLS and not resumed and any(run_root.rglob("checkpoints/last.pt")):
            cmd += ["--resume", "auto"]  # continue a crashed or interrupted attempt exactly
            resumed = True               # if resuming fails too, the next attempt starts afresh
        cmd += ["--set", *spec.overrides(sweep.fixed)]
        rc = _attempt(cmd, log_path, env, timeout, attempt)
        results = finished_results(run_root)
        if rc == 0 and results:
            status = "done" if attempt == 1 else "retried"
            return {**entry, "status": status, "attempts": attempt, "results": str(results), "log": str(log_path),
                    "seconds": round(time.perf_counter() - start, 1)}
    tail = log_path.read_text(errors="replace").splitlines()[-15:]
    return {**entry, "status": "failed", "attempts": attempts, "returncode": rc, "log": str(log_path),
            "log_tail": tail, "seconds": round(time.perf_counter() - start, 1)}


def child_env(workers: int, threads_per_run: int = 0) -> dict[str, str]:
    """Environment of the runs: the repo on PYTHONPATH, unbuffered logs without progress bars, and CPU threads
    split among workers."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["ISL_PROGRESS"] = "off"  # each run writes to a log file: no carriage-return progress bars in it
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if threads_per_run > 0:                 # asked for explicitly
            env[var] = str(threads_per_run)
        elif workers > 1 and var not in env:    # N runs share the cores instead of each taking all of them
            env[var] = str(max(1, (os.cpu_count() or 1) // workers))
    return env


def select_variants(specs: list[RunSpec], variants: dict[str, list[str]], only: list[str] | None) -> list[RunSpec]:
    """The specs of the named variants, in the order the names are given (all specs when `only` is empty)."""
    if not only:
        return specs
    if not variants:
        raise SweepError("--variants picks named variants, but this sweep has none (it sweeps a grid); "
                         "narrow the grid with --grid KEY=V1,V2 instead")
    unknown = [v for v in only if v not in variants]
    if unknown:
        raise SweepError(f"unknown variant(s) {unknown}; this sweep's variants are: {', '.join(variants)}")
    rank = {name: i for i, name in enumerate(dict.fromkeys(only))}
    chosen = [s for s in specs if s.combo[0][1] in rank]
    return sorted(chosen, key=lambda s: rank[s.combo[0][1]])   # stable: seeds and grid order kept per variant


def execute(sweep: Sweep, workers: int = 1, data_root: str | None = None, timeout: float | None = None,
            threads_per_run: int = 0, progress=print, only: list[str] | None = None) -> dict[str, Any]:
    """Validate, then run every (combination, seed) with `workers` parallel processes (only the variants named
    in `only`, in that order, when given). Returns the summary {"runs": [...], "done", "retried", "skipped",
    "busy", "failed"} (also written to <out>/summary.json)."""
    specs = select_variants(expand(sweep.grid, sweep.seeds, sweep.variants, sweep.variant_cfgs), sweep.variants, only)
    validate(sweep, specs)
    tool_command(sweep.tool)
    out = Path(sweep.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(asdict(sweep), indent=2) + "\n")
    env = child_env(workers, threads_per_run)
    entries: list[dict] = []

    def task(spec: RunSpec) -> dict:
        entry = run_one(sweep, spec, env, data_root, timeout)
        entries.append(entry)
        progress(f"[{len(entries)}/{len(specs)}] {entry['status']:>7}  {spec.label}")
        return entry

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:   # threads only wait on child processes
        list(pool.map(task, specs))
    order = {s.label: i for i, s in enumerate(specs)}
    entries.sort(key=lambda e: order[e["run"]])
    summary = {"runs": entries, **{k: [e["run"] for e in entries if e["status"] == k]
                                   for k in ("done", "retried", "skipped", "busy", "failed")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
