"""Shared behaviour of the command-line tools: expected errors print one line and exit 2, not a traceback."""
from __future__ import annotations

import logging
import json
import sys
from pathlib import Path
from typing import Callable

from .checkpoint import CheckpointError
from .config import CONFIG_DIR, ConfigError
from .data import DatasetCorruptedError, DatasetNotFoundError
from .distributed import broadcast_object, close_distributed, init_distributed, is_main
from .progress import disable_progress
from .rundir import FollowerRunDir, RunDir, RunDirError, setup_logging
from .training import VAL_METRICS, NonFiniteLossError

# what a user can fix (a config, a path, a checkpoint, a data folder, a diverging learning rate): one line, exit 2
USER_ERRORS = (ConfigError, CheckpointError, DatasetNotFoundError, DatasetCorruptedError, RunDirError,
               NonFiniteLossError)


def summary_line(results: dict, keys: tuple[str, ...]) -> str:
    """One JSON line of the final metrics (NaN, e.g. the probe when it is off, printed as null)."""
    return json.dumps({k: None if isinstance(results.get(k), float) and results[k] != results[k] else results.get(k)
                       for k in keys})


def run_cli(main: Callable[..., object], argv: list[str] | None = None) -> object:
    """Call `main(argv)` (argv None: sys.argv); turn the errors a user can fix into one line on stderr and exit
    code 2. Returns what `main` returned."""
    try:
        return main(argv)
    except USER_ERRORS as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)  # one line, whatever the message held
        raise SystemExit(2) from None


def add_run_arguments(parser, default_cfg: str) -> None:
    """The options every training tool shares: --cfg, --set, --resume, --data-root, --output-root, and the
    output switches of `add_output_arguments`."""
    parser.add_argument("--cfg", default=default_cfg, help="experiment yaml: a path or a name in configs/")
    parser.add_argument("--set", dest="overrides", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. isl.gan.alpha=2.0 seed=1")
    parser.add_argument("--resume", default=None, metavar="auto|PATH",
                        help="auto = the newest run of this experiment; PATH = a checkpoint or run directory")
    parser.add_argument("--data-root", default=None, help="data folder (else $ISL_DATA_ROOT or ./data)")
    parser.add_argument("--output-root", default=None, help="runs folder (else $ISL_OUTPUT_ROOT or ./runs)")
    add_output_arguments(parser)


def add_output_arguments(parser) -> None:
    """--no-tensorboard, --no-progress, --quiet: what a run prints and writes besides its metrics."""
    parser.add_argument("--no-tensorboard", action="store_true",
                        help="skip TensorBoard event files (metrics.jsonl holds the same scalars)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are drawn only when stderr is a terminal anyway)")
    parser.add_argument("--quiet", action="store_true",
                        help="no bars and only warnings on the console; run.log still holds every INFO line")


def apply_output_arguments(args) -> None:
    """Act on --no-progress / --quiet before a run starts (bars off, console at WARNING)."""
    if args.no_progress or args.quiet:
        disable_progress()
    if args.quiet:
        setup_logging(console_level=logging.WARNING)


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


def open_run(cfg, resume: str | None, tensorboard: bool):
    """(run directory, checkpoint to resume or None) for a training tool, after joining torchrun's process group
    when launched by it: rank 0 creates (or reopens) the run directory; the other ranks get a FollowerRunDir of
    the same path (they write nothing), no progress bars and errors only on the console: the GAN and the mining
    run identically on every rank (a digest check says so), so their warnings would repeat once per rank."""
    init_distributed(cfg.train.device)
    if not is_main():
        disable_progress()
        setup_logging(console_level=logging.ERROR)
        path, ckpt = broadcast_object(None)
        return FollowerRunDir(path), None if ckpt is None else Path(ckpt)
    if resume:
        run_dir, ckpt = find_resume(cfg, resume)
        run = RunDir(run_dir, enable_tensorboard=tensorboard)
    else:
        run, ckpt = RunDir.create(cfg, enable_tensorboard=tensorboard), None
    broadcast_object((str(run.path), None if ckpt is None else str(ckpt)))
    return run, ckpt



def train_in_run(cfg, args, train: Callable[..., dict], summary_keys: tuple[str, ...]) -> dict:
    """The body of a training tool: open the run (`open_run`), `train(cfg, run, resume=ckpt)`, close the run and
    the process group, and on rank 0 print the summary line and the run directory. A start that fails before its
    first checkpoint leaves no run folder behind."""
    run, ckpt = open_run(cfg, args.resume, tensorboard=not args.no_tensorboard)
    try:
        results = train(cfg, run, resume=ckpt)
    except BaseException:
        if ckpt is None:
            run.discard_if_unstarted()
        raise
    finally:
        run.close()
        main_rank = is_main()  # read before the process group is gone
        close_distributed()
    if main_rank:
        print(summary_line(results, (*summary_keys, *(k for k in VAL_METRICS if k in results))))
        print(f"run directory: {run.path}")
    return results


BASELINE_DATA_DIR = CONFIG_DIR / "baselines" / "datasets"


def add_data_argument(parser) -> None:
    """--data NAME: the data-set base file of a baseline config (configs/baselines/datasets/NAME.yaml)."""
    names = sorted(p.stem for p in BASELINE_DATA_DIR.glob("*.yaml"))
    parser.add_argument("--data", default=None, metavar="NAME",
                        help=f"data set of the baseline: {', '.join(names)} (replaces the yaml's _base_: model, "
                             "batch, kNN k, epochs, experiment name <dataset>_baseline_<loss>; default digits)")


def baseline_data_base(name: str | None) -> str | None:
    """The base file for --data NAME (None: keep the yaml's own _base_)."""
    if name is None:
        return None
    path = BASELINE_DATA_DIR / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in BASELINE_DATA_DIR.glob("*.yaml"))
        raise ConfigError(f"--data {name}: no {path}; choose one of {', '.join(names)}")
    return str(path)
