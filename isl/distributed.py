"""Data-parallel training through torch.distributed, launched by torchrun (DDP); one process when not.

    torchrun --nproc_per_node=4 tools/train_isl.py --cfg cifar10.yaml       # 4 GPUs, NCCL
    torchrun --nproc_per_node=2 tools/train_isl.py --cfg digits.yaml        # 2 CPU processes, gloo

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `init_distributed` reads them (backend nccl on CUDA, gloo on
CPU) and every other function here asks torch.distributed for the rank and world size, so the same code runs
single-process (world size 1: every helper is a no-op) and under torchrun. What is split and what is not:

- `train.batch_size` is the GLOBAL batch: each rank trains on batch_size / world_size images per step
  (`per_rank_batch`): its contiguous slice of the one-process batch k, shuffled per epoch by the same seeded
  generator as in one process (`ShardedBatches`), so the ranks' shares of step k together are that batch.
- the encoder is wrapped in DistributedDataParallel (gradients averaged over ranks = the global batch's mean
  loss); `train.sync_bn` converts BatchNorm to SyncBatchNorm (CUDA only: torch's SyncBatchNorm has no CPU
  kernel), otherwise each rank normalises with its own share's statistics.
- every rank holds the full memory bank and the same positive sets: the (index, feature) pairs of every rank
  are all-gathered (`all_gather_batch`) before the bank update, so every rank applies the same global update.
- the GAN, the mining and the round's view features run identically on every rank: their inputs (bank,
  positive sets, the run's generator state, G and D) are identical, so are their outputs, with no
  communication and no rank idling at a barrier while another mines. `check_same` compares a digest of the
  bank, the positive sets and G / D across ranks after each stage, so a nondeterministic kernel that made
  them drift stops the run instead of training on diverged state.
- logging, TensorBoard, checkpoints and results come from rank 0 only (`is_main`).
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from .config import ConfigError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0 (or the only process): the one that logs and writes the run directory."""
    return rank() == 0


def init_distributed(device_name: str = "auto") -> torch.device:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK) and return this rank's device.

    Without torchrun (no WORLD_SIZE, or 1) nothing is initialised and `device_name` is used as given
    (auto = CUDA when present). Under torchrun each rank takes cuda:LOCAL_RANK with NCCL, or the CPU with gloo
    when `device_name` is cpu or no GPU is visible.
    """
    from .builders import select_device
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return select_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name.startswith("cuda") and not cuda:
        raise ConfigError(f"train.device={device_name} but no CUDA device is visible; use train.device=cpu (gloo)")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    return device


def close_distributed(sync_timeout_s: float = 60.0) -> None:
    """Tear the process group down. Under gloo the ranks first meet at a barrier (bounded: monitored_barrier raises
    after sync_timeout_s, e.g. when a peer died, and the group is destroyed anyway): a rank that destroys its group
    while a peer is still closing its connections can abort ("terminate called without an active exception"),
    seen once in tests/test_distributed.py on a loaded machine."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=timedelta(seconds=sync_timeout_s))
        except RuntimeError:
            pass
    dist.destroy_process_group()


def per_rank_batch(batch_size: int) -> int:
    """batch_size (global) / world size; a ConfigError when it does not divide."""
    w = world_size()
    if batch_size % w:
        raise ConfigError(f"train.batch_size={batch_size} is the global batch and must be divisible by the number "
                          f"of processes ({w}); choose a multiple of {w} or another --nproc_per_node")
    return batch_size // w


class ShardedBatches:
    """This rank's contiguous share of every global batch: rank r takes items [r B/W, (r+1) B/W) of each batch
    of `batches` (any iterable of index batches in the one-process order; a batch sampler, or a DataLoader over
    range(N) that shuffles exactly as the one-process loader). Concatenated in rank order, the shares of step k
    are the one-process batch k, item for item -- so `all_gather_batch` restores the global batch in order."""

    def __init__(self, batches, batch_size: int):
        self.batches, self.share, self.rank = batches, per_rank_batch(batch_size), rank()

    def __iter__(self):
        lo = self.rank * self.share
        for batch in self.batches:
            batch = batch.tolist() if isinstance(batch, torch.Tensor) else list(batch)
            yield batch[lo:lo + self.share]

    def __len__(self) -> int:
        return len(self.batches)


def shard_loader(dataset: Dataset, batch_size: int, shuffle: torch.Generator, num_workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """This rank's share of the one-process loader's batches (shuffled by `shuffle`, short batch dropped).

    Not DistributedSampler: its permutation (seed + epoch) is not the one the one-process DataLoader draws
    from the same generator (the loader takes a base seed from it first), so 1 and W processes would train on
    different batches. Shuffling range(N) with the very loader the one-process run uses and slicing its
    batches makes step k of a W-process run see exactly the images of step k of a one-process run."""
    order = DataLoader(range(len(dataset)), batch_size=batch_size, shuffle=True, drop_last=True, generator=shuffle)
    return DataLoader(dataset, batch_sampler=ShardedBatches(order, batch_size), num_workers=num_workers,
                      pin_memory=pin_memory)


def wrap_model(model: torch.nn.Module, sync_bn: bool, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(model, trained): the module itself (state_dict, evaluation) and what the training step calls -- the
    same module in one process, DistributedDataParallel around it under torchrun (SyncBatchNorm with sync_bn)."""
    if world_size() == 1:
        return model, model
    if sync_bn:
        if device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA (torch's SyncBatchNorm has no CPU kernel); set "
                              "train.sync_bn=false under gloo, or use a normalisation without batch statistics")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None)
    return model, ddp


def all_gather_batch(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor (same shape on every rank: per-rank batches are equal) concatenated over ranks in rank order:
    B/W x ... -> B x .... One process: returned unchanged. No gradient flows through (targets, bank updates)."""
    w = world_size()
    if w == 1:
        return tensors
    out = []
    for t in tensors:
        t = t.detach().contiguous()
        parts = [torch.empty_like(t) for _ in range(w)]
        dist.all_gather(parts, t)
        out.append(torch.cat(parts, dim=0))
    return tuple(out)


def local_share(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous slice of global-batch tensors (B x ... -> B/W x ...), as `ShardedBatches` slices."""
    w = world_size()
    if w == 1:
        return tensors
    k = per_rank_batch(tensors[0].shape[0])
    return tuple(t[rank() * k:(rank() + 1) * k] for t in tensors)


def all_gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """The global batch B x d from every rank's B/W x d, in rank order, differentiable through this rank's slice.

    For a loss computed on the whole gathered batch (the baselines' pair and proxy losses), every rank computes
    the same loss L; its gradient reaches this rank's parameters only through its own slice, dL/df_local. DDP
    then AVERAGES parameter gradients over ranks, so the slice's gradient is scaled by W here: the average of
    the W ranks' W * dL/dtheta_r is the full dL/dtheta, as in one process. Parameters outside DDP (a loss's
    proxies) see the whole batch on every rank and get the one-process gradient unscaled."""
    w = world_size()
    if w == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(w)]
    dist.all_gather(parts, local.detach().contiguous())
    mine = local.clone()
    if mine.requires_grad:
        mine.register_hook(lambda grad: grad * w)
    parts[rank()] = mine
    return torch.cat(parts, dim=0)


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (a picklable value; results dicts, run-directory paths)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def digest(*tensors: torch.Tensor) -> torch.Tensor:
    """A float64 fingerprint of tensors (sum and position-weighted sum of each): equal state -> equal digest."""
    rows = []
    for t in tensors:
        flat = t.detach().reshape(-1).double()
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device) / max(flat.numel(), 1)
        rows.append(torch.stack([flat.sum(), (flat * weights).sum(), torch.tensor(float(flat.numel()),
                                                                                  dtype=torch.float64, device=flat.device)]))
    return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.float64)


def check_same(what: str, *tensors: torch.Tensor) -> None:
    """Raise when `tensors` differ between ranks (compared through `digest`); a no-op in one process."""
    w = world_size()
    if w == 1:
        return
    mine = digest(*tensors)
    parts = [torch.empty_like(mine) for _ in range(w)]
    dist.all_gather(parts, mine)
    if any(not torch.equal(parts[0], p) for p in parts[1:]):
        raise RuntimeError(f"{what} differ between ranks after a stage that should leave them identical (a "
                           "nondeterministic kernel?); rerun with torch.use_deterministic_algorithms(True) or one "
                           "process")


def rank_seed(seed: int, salt: int) -> int:
    """A seed for this rank's own random stream (data augmentation), different on every rank."""
    return (seed * 1_000_003 + 7_919 * rank() + salt) % (2**63)
