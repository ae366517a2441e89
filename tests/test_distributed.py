"""torchrun's data parallelism on CPU (gloo, 2 processes spawned by torch.multiprocessing): after a few steps a
2-rank run equals a 1-rank run with the same global batch, and every rank holds the same bank and positive sets.

The encoder is convnet_gn (GroupNorm, no batch statistics: SyncBatchNorm has no CPU kernel) and the images are
not augmented (each rank draws its own augmentation stream by design), so the two runs compute the same
function; what remains is float summation order (DDP averages the two ranks' gradients, the 1-rank run sums
the whole batch at once), a difference of ~1e-7 per step. Tolerance: 1e-5 absolute on weights and bank rows.
"""
from __future__ import annotations

import json
import os
import socket

import torch
import torch.multiprocessing as mp

from isl.checkpoint import load_checkpoint
from isl.config import ConfigError, load_config
from isl.rundir import FollowerRunDir, RunDir, read_metrics
from isl.train import StopRun, run_isl

from baseline_tool_helpers import TINY as BASELINE_TINY
from baselines.trainer import run_baseline
from test_train_isl import TINY

# float32 throughout: the check is that 2 ranks compute what 1 process computes on the global batch, to 1e-5;
# under bf16 (train.amp=auto on a CPU with bf16 units) the two batch splits round differently
FLOAT32 = ["train.amp=off", "train.channels_last=off"]
SETTINGS = TINY + ["model.arch=convnet_gn", "data.augment=none", "isl.mining.strategy=knn", "train.epochs_first=1",
                   "train.batch_size=32", "train.max_steps_per_epoch=4", "eval.linear_probe=false",
                   "isl.mining.quota=0.05", "isl.mining.radius=1.2", "train.device=cpu", *FLOAT32]
ATOL = 1e-5
# the baseline trainer: proxy_anchor (its proxies live outside DDP), batches of 32 = 4 per class, 2 epochs of 2
# steps, digits augmentation on (the whole batch is augmented on every rank, then sliced)
BASELINE = BASELINE_TINY + ["model.arch=convnet_gn", "baseline.loss=proxy_anchor", "baseline.loss_kwargs={}",
                            "baseline.epochs=2", "eval.linear_probe=false", "train.device=cpu", *FLOAT32]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, extra: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from isl.distributed import barrier, close_distributed, init_distributed
    cfg = load_config("digits.yaml", SETTINGS + extra, output_root=os.path.join(out, "runs"))
    init_distributed(cfg.train.device)
    from isl.distributed import per_rank_batch, wrap_model
    try:  # a global batch that does not split over the ranks is a one-line config error
        per_rank_batch(33)
        config_errors = False
    except ConfigError as err:
        config_errors = "must be divisible by the number of processes (2)" in str(err)
    try:  # so is SyncBatchNorm under gloo (it has no CPU kernel)
        wrap_model(torch.nn.BatchNorm1d(2), True, torch.device("cpu"))
        config_errors = False
    except ConfigError as err:
        config_errors = config_errors and "train.sync_bn needs CUDA" in str(err)
    run = RunDir(os.path.join(out, "ddp"), enable_tensorboard=False) if rank == 0 else \
        FollowerRunDir(os.path.join(out, "ddp"))
    try:
        from isl.train import ISLRun
        captured, original = {}, ISLRun.__init__
        ISLRun.__init__ = lambda self, *a: (original(self, *a), captured.update(run=self))[0]
        results = run_isl(cfg, run)
        state = captured["run"].state_dict()  # every rank's last state (only rank 0 writes checkpoints)
        torch.save({"results": {**results, "config_errors": config_errors}, "bank": state["bank"]["bank"], "model": state["model"],
                    "indptr": state["positives"]["indptr"], "indices": state["positives"]["indices"]},
                   os.path.join(out, f"rank{rank}.pt"))
        # resume under torchrun: stop after the 2nd checkpoint (inside round 0), resume from rank 0's checkpoint
        part = RunDir(os.path.join(out, "ddp_part"), enable_tensorboard=False) if rank == 0 else \
            FollowerRunDir(os.path.join(out, "ddp_part"))
        try:
            run_isl(cfg, part, stop_after=2)
        except StopRun:
            pass
        barrier()  # rank 0 has written the checkpoint the others read
        run_isl(cfg, part, resume=part.checkpoint_path)
        bcfg = load_config("baselines/triplet.yaml", BASELINE, output_root=os.path.join(out, "runs"))
        brun = RunDir(os.path.join(out, "ddp_baseline"), enable_tensorboard=False) if rank == 0 else \
            FollowerRunDir(os.path.join(out, "ddp_baseline"))
        run_baseline(bcfg, brun)
    finally:
        close_distributed()


def test_two_ranks_equal_one_rank_with_the_same_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), []), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # the ranks hold identical banks and positive sets, bit for bit
    assert torch.equal(r0["bank"], r1["bank"])
    assert torch.equal(r0["indptr"], r1["indptr"]) and torch.equal(r0["indices"], r1["indices"])
    assert json.dumps(r0["results"], sort_keys=True) == json.dumps(r1["results"], sort_keys=True)  # NaN == NaN
    assert r0["results"]["world_size"] == 2
    assert not (tmp_path / "runs").exists()  # rank 1 wrote no run directory of its own
    # one process, the same global batch of 32
    cfg = load_config("digits.yaml", SETTINGS, output_root=str(tmp_path / "runs"))
    single = RunDir(tmp_path / "single", enable_tensorboard=False)
    run_isl(cfg, single)
    one = load_checkpoint(single.checkpoint_path)
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert int(one["positives"]["indptr"][-1]) > 0  # the mining round added pairs
    assert torch.equal(one["positives"]["indptr"], ddp["positives"]["indptr"])
    assert torch.equal(one["positives"]["indices"], ddp["positives"]["indices"])
    torch.testing.assert_close(ddp["bank"]["bank"], one["bank"]["bank"], atol=ATOL, rtol=0)
    for key, value in one["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, atol=ATOL, rtol=0, msg=key)
    fresh = torch.load(tmp_path / "rank0.pt", weights_only=False)["model"]
    assert all(torch.equal(fresh[k], ddp["model"][k]) for k in fresh)  # rank 0's checkpoint is its state
    # same number of steps per epoch: 4 per encoder epoch in both runs
    steps = lambda path: [r["steps"] for r in read_metrics(path) if r["stage"] == "encoder"]
    assert steps(single.path) == steps(tmp_path / "ddp") == [4, 4]
    assert r0["results"]["config_errors"] and r1["results"]["config_errors"]
    # the run stopped after 2 checkpoints and resumed under torchrun ends bit-identical to the uninterrupted one
    resumed = load_checkpoint(tmp_path / "ddp_part" / "checkpoints" / "last.pt")
    for part in ("model", "bank", "positives"):
        for key, value in ddp[part].items():
            assert torch.equal(resumed[part][key], value), f"{part}.{key}"
    # the baseline trainer: same weights and proxies as one process with the same global batch
    bcfg = load_config("baselines/triplet.yaml", BASELINE, output_root=str(tmp_path / "runs"))
    bsingle = RunDir(tmp_path / "single_baseline", enable_tensorboard=False)
    run_baseline(bcfg, bsingle)
    one = load_checkpoint(bsingle.checkpoint_path)
    ddp = load_checkpoint(tmp_path / "ddp_baseline" / "checkpoints" / "last.pt")
    for part in ("model", "loss"):
        for key, value in one[part].items():
            torch.testing.assert_close(ddp[part][key], value, atol=ATOL, rtol=0, msg=f"{part}.{key}")


def test_follower_ranks_print_errors_only(tmp_path, monkeypatch):
    """Ranks > 0 run the GAN and the mining identically to rank 0: their warnings would repeat once per rank."""
    import logging

    import isl.cli as cli
    monkeypatch.setattr(cli, "init_distributed", lambda device: None)
    monkeypatch.setattr(cli, "is_main", lambda: False)
    monkeypatch.setattr(cli, "disable_progress", lambda: None)   # process-wide; the other tests keep their bars
    monkeypatch.setattr(cli, "broadcast_object", lambda obj: (str(tmp_path / "run"), None))
    cfg = load_config("digits.yaml", output_root=str(tmp_path))
    root = logging.getLogger("isl")
    console = [h for h in root.handlers if getattr(h, "_isl_console", False)]
    before = [h.level for h in console]
    try:
        run, ckpt = cli.open_run(cfg, resume=None, tensorboard=False)
        assert isinstance(run, FollowerRunDir) and ckpt is None
        console = [h for h in root.handlers if getattr(h, "_isl_console", False)]
        assert [h.level for h in console] == [logging.ERROR]
    finally:
        for h, level in zip(console, before or [logging.NOTSET]):
            h.setLevel(level)
