"""The supervised baseline training loop behind tools/train_baseline.py.

One visible loop: for each epoch, (optionally) refresh what the loss or the sampler derives from the current
embeddings -- Magnet's per-class k-means clusters (every ``baseline.magnet_refresh`` epochs) and the
hierarchical triplet loss's class tree (every epoch) -- then one pass of
    embeddings = encoder(augment(images)); indices = miner(embeddings, labels); loss(embeddings, labels, indices)
over the sampler's batches, then the shared evaluation (kNN, NMI, ACC, ARI on freshly extracted test-transform
features) every ``train.eval_every`` epochs and at the end. Same encoders, data sets, config, run directory
and checkpoint format as ISL (checkpoint keys "config" and "model" are what tools/evaluate.py and
tools/probe.py read). A checkpoint is written after every epoch; ``resume`` continues from one (bit-identical
on CPU except for Magnet clusters, which are recomputed from the resumed encoder at the first resumed epoch).
"""
from __future__ import annotations

import inspect
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from isl.amp import autocast, grad_scaler, resolve_precision, to_memory_format
from isl.builders import (build_encoder_from_config, build_eval_loaders, build_raw_train_set, build_train_set,
                          loader_workers, uses_batched_augment)
from isl.checkpoint import (RNG_KEYS, check_fields, check_format, check_keys, load_checkpoint, load_module_state,
                            load_optimizer_state, rng_state, seed_everything, set_rng_state)
from isl.config import Config, ConfigError, to_dict
from isl.distributed import (ShardedBatches, all_gather_batch, all_gather_with_grad, broadcast_object, is_main,
                             init_distributed, local_share, per_rank_batch, shard_loader, world_size, wrap_model)
from isl.data import DATASETS, build_transform, dataset_targets
from isl.data.transforms import augment_raw_batch
from isl.eval import extract_features
from isl.hardware import tune_allocator
from isl.progress import PROGRESS, epoch_line
from isl.rundir import RunDir, count_resumes, read_metrics, resume_record
from isl.training import (NonFiniteLossError, check_finite_state, check_same_config, evaluate_model,
                          held_out_summary, learning_rate, stop_on_divergence)

from .miners import MINERS, build_miner
from .registry import LOSSES, build_loss, unknown_name_error
from .samplers import MagnetBatchSampler, MPerClassBatchSampler

log = logging.getLogger("isl")

SAMPLERS = ("m_per_class", "magnet", "random")
CHECKPOINT_FORMAT = 1  # the first layout (its checkpoints carry no "format" key; read as 1)


@dataclass
class BaselineProgress:
    epoch: int = 0          # completed epochs
    elapsed: float = 0.0    # seconds of training before this process


def check_baseline_config(cfg: Config) -> None:
    """Choices of the baseline section and its loss / miner arguments (ConfigError with the valid choices), before
    any data is loaded; the numeric ranges are in isl.config.RANGES."""
    b = cfg.baseline
    if b.loss not in LOSSES:
        raise ConfigError(str(unknown_name_error("baseline.loss", b.loss, LOSSES)))
    if b.miner not in ("none", *MINERS):
        raise ConfigError(str(unknown_name_error("baseline.miner", b.miner, ["none", *MINERS])))
    if b.sampler not in SAMPLERS:
        raise ConfigError(f"baseline.sampler={b.sampler!r} is not one of {', '.join(SAMPLERS)}")
    if b.sampler == "magnet" and cfg.train.batch_size % b.magnet_batch_clusters != 0:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} must be a multiple of "
                          f"baseline.magnet_batch_clusters={b.magnet_batch_clusters} (M clusters x D samples)")
    build_baseline_loss(cfg)  # a misspelt or out-of-range loss argument fails here, not after loading data
    try:
        build_miner(b.miner, **b.miner_kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"baseline.miner_kwargs {b.miner_kwargs} for {b.miner}: {err}") from None


def build_baseline_loss(cfg: Config) -> torch.nn.Module:
    """cfg.baseline.loss with its loss_kwargs; a wrong argument is a ConfigError listing what the loss takes."""
    b = cfg.baseline
    loss_kwargs = dict(b.loss_kwargs)
    if b.loss == "magnet" and b.sampler == "magnet":
        loss_kwargs.setdefault("samples_per_cluster", cfg.train.batch_size // b.magnet_batch_clusters)
    try:
        return build_loss(b.loss, num_classes=DATASETS[cfg.data.name].num_classes,
                          embedding_size=cfg.model.low_dim, **loss_kwargs)
    except (TypeError, ValueError) as err:  # a misspelt or out-of-range loss argument
        params = [n for n in inspect.signature(LOSSES[b.loss].__init__).parameters if n not in ("self", "kwargs")]
        raise ConfigError(f"baseline.loss_kwargs {loss_kwargs} for {b.loss}: {err}; the loss takes "
                          f"{', '.join(params)} (and pytorch-metric-learning's distance, reducer, ...)") from None


class BaselineRun:
    """Everything a baseline run holds, built from the config; `state_dict` / `load_state_dict` for resume."""

    def __init__(self, cfg: Config, device: torch.device):
        check_baseline_config(cfg)
        self.cfg, self.device, b = cfg, device, cfg.baseline
        seed_everything(cfg.seed)
        batched = uses_batched_augment(cfg) and cfg.data.augment != "none"
        # data.augment_backend auto / batched: raw images (digits, Fashion-MNIST 1 x S x S float; CIFAR, STL-10, SVHN
        # C x H x W uint8), a whole batch augmented at once on the device; pil: per image in the DataLoader
        self.train_set = build_raw_train_set(cfg) if batched else build_train_set(cfg)
        self.augment = ((lambda x, g: augment_raw_batch(x, cfg.data.name, cfg.data.augment, generator=g))
                        if batched else None)
        self.train_workers = loader_workers(cfg, per_image=not batched)
        self.labels = dataset_targets(self.train_set)  # N
        if bool((self.labels < 0).any()):
            raise ConfigError(f"{cfg.data.name}/{cfg.data.train_split} has unlabelled images (target -1); "
                              "supervised baselines need labels: set data.train_split to a labelled split")
        self.num_classes = DATASETS[cfg.data.name].num_classes
        if device.type == "cpu":
            tune_allocator()  # large temporaries reused, not page-faulted in every step (isl/hardware.py)
        self.precision = resolve_precision(cfg.train.amp, cfg.train.channels_last, device)  # the autos decided
        self.model = to_memory_format(build_encoder_from_config(cfg).to(device), self.precision.channels_last)
        self.scaler = grad_scaler(device, self.precision.amp)  # fp16 only; bf16 / off: a disabled pass-through
        per_rank_batch(cfg.train.batch_size)  # under torchrun: the global batch must split evenly over ranks
        # the encoder's training forward: DistributedDataParallel under torchrun, the model itself otherwise
        self.model, self.train_model = wrap_model(self.model, cfg.train.sync_bn, device)
        self.loss = build_baseline_loss(cfg).to(device)
        self.miner = build_miner(b.miner, **b.miner_kwargs)
        o = cfg.optim
        groups = [{"params": list(self.model.parameters()), "lr": o.lr, "weight_decay": o.weight_decay,
                   "lr_scale": 1.0}]
        loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        if loss_params:  # proxies: their own learning rate, no weight decay
            groups.append({"params": loss_params, "lr": b.loss_lr, "weight_decay": 0.0,
                           "lr_scale": b.loss_lr / o.lr})
        self.optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
        self.sampler = self._build_sampler()
        self.bank_loader, self.query_loader = build_eval_loaders(cfg)
        self.progress = BaselineProgress()

    def _build_sampler(self):
        b, bs = self.cfg.baseline, self.cfg.train.batch_size
        if bs > len(self.labels):
            raise ConfigError(f"train.batch_size={bs} is larger than the training set ({len(self.labels)})")
        steps = self.cfg.train.max_steps_per_epoch or None
        try:
            if b.sampler == "m_per_class":
                return MPerClassBatchSampler(self.labels, b.m_per_class, bs, num_batches=steps, seed=self.cfg.seed)
            if b.sampler == "magnet":
                return MagnetBatchSampler(self.labels, b.magnet_clusters, b.magnet_batch_clusters,
                                          bs // b.magnet_batch_clusters, num_batches=steps, seed=self.cfg.seed)
        except ValueError as err:  # a batch shape the data cannot fill: a config problem, say which keys
            raise ConfigError(f"baseline.sampler={b.sampler} with train.batch_size={bs}, "
                              f"baseline.m_per_class={b.m_per_class} on {self.cfg.data.name}: {err}") from None
        return None

    def train_loader(self, epoch: int) -> DataLoader:
        """The epoch's global batches; under torchrun each rank loads its share of each (`ShardedBatches`),
        except with the batched augmentation, where the whole batch is augmented with the epoch's generator on every
        rank and then sliced (`train_one_epoch`), so the augmentation draws are the one-process draws."""
        common = dict(num_workers=self.train_workers, pin_memory=self.device.type == "cuda")
        shard = world_size() > 1 and self.augment is None
        bs = self.cfg.train.batch_size
        if self.sampler is None:
            shuffle = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            if shard:
                return shard_loader(self.train_set, bs, shuffle, **common)
            return DataLoader(self.train_set, batch_size=bs, shuffle=True, drop_last=True, generator=shuffle, **common)
        self.sampler.set_epoch(epoch)
        return DataLoader(self.train_set, batch_sampler=ShardedBatches(self.sampler, bs) if shard else self.sampler,
                          **common)

    def train_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-transform embeddings of the whole training set, in dataset order: (N x d, N)."""
        plain = build_train_set(self.cfg, transform=build_transform(self.cfg.data.name, train=False))
        loader = DataLoader(plain, batch_size=self.cfg.eval.batch_size, shuffle=False,
                            num_workers=loader_workers(self.cfg, per_image=False))
        features, labels, _ = extract_features(self.model, loader, self.device)
        return features, labels

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "config": to_dict(self.cfg), "kind": "baseline",
                "progress": asdict(self.progress),
                "model": self.model.state_dict(), "loss": self.loss.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Format, keys, progress fields and tensor shapes checked first (one-line CheckpointError), then loaded."""
        check_format(state, CHECKPOINT_FORMAT)
        check_keys(state, [k for k in self.state_dict() if k != "format"])
        check_same_config(state["config"], self.cfg)
        check_fields(state["progress"], asdict(self.progress), "progress")
        check_keys(state["rng"], RNG_KEYS, "checkpoint's rng")
        load_module_state(self.model, state["model"], "model")
        load_module_state(self.loss, state["loss"], "loss")
        load_optimizer_state(self.optimizer, state["optimizer"], "optimizer")
        self.scaler.load_state_dict(state["scaler"])  # {} from a run without fp16: ignored when disabled
        set_rng_state(state["rng"])
        self.progress = BaselineProgress(**state["progress"])


def train_one_epoch(s: BaselineRun, epoch: int) -> dict[str, float]:
    """One pass over the sampler's batches; returns the mean loss and timing."""
    cfg, device = s.cfg, s.device
    s.model.train()
    augment_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch + 17)
    total, steps, start = torch.zeros((), dtype=torch.float64), 0, time.perf_counter()
    images_seen = 0
    for images, labels, _ in s.train_loader(epoch):
        if s.augment is not None:  # the global batch's draws from the epoch's CPU generator, computed on the device
            images = s.augment(images.to(device, non_blocking=True), augment_gen)  # B x C x H x W
            images, labels = local_share(images, labels)  # torchrun: this rank's B/W of the augmented batch
        images, labels = images.to(device, non_blocking=True), labels.to(device)
        with autocast(device, s.precision.amp):  # only the encoder; the miner and the loss run in float32
            embeddings = s.train_model(to_memory_format(images, s.precision.channels_last))
        # torchrun: the miner and the loss see the global batch (every rank computes the same loss)
        embeddings = all_gather_with_grad(embeddings.float())  # B x d, unit norm
        (labels,) = all_gather_batch(labels)
        indices = s.miner(embeddings, labels) if s.miner is not None else None
        try:
            loss = s.loss(embeddings, labels, indices)
        except ValueError as err:
            if indices is not None and "indices_tuple is not supported" in str(err):
                raise ConfigError(f"baseline.loss={cfg.baseline.loss} selects its own pairs and takes no miner; "
                                  f"set baseline.miner=none (got {cfg.baseline.miner!r})") from None
            raise
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite {cfg.baseline.loss} loss {loss.item()} at step {steps} of "
                                     f"epoch {epoch}; lower optim.lr or check baseline.loss_kwargs")
        s.optimizer.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()  # fp16: scaled loss, inf / NaN steps skipped; otherwise plain
        s.scaler.step(s.optimizer)
        s.scaler.update()
        total += loss.detach().double().cpu()
        steps, images_seen = steps + 1, images_seen + len(images)
        if cfg.train.max_steps_per_epoch and steps >= cfg.train.max_steps_per_epoch:
            break
    seconds = time.perf_counter() - start
    return {"loss": float(total / max(steps, 1)), "steps": steps, "sec_per_epoch": seconds,
            "images_per_s": images_seen / seconds}


def refresh_from_embeddings(s: BaselineRun, epoch: int, resumed: bool) -> None:
    """Magnet clusters and the hierarchical class tree from the current training-set embeddings."""
    b = s.cfg.baseline
    magnet_due = isinstance(s.sampler, MagnetBatchSampler) and (epoch % b.magnet_refresh == 0 or resumed)
    tree_due = hasattr(s.loss, "fit_tree")
    if not (magnet_due or tree_due):
        return
    features, labels = s.train_features()
    if magnet_due:
        s.sampler.refreshes = epoch  # the k-means seed depends on the epoch only (reproducible on resume)
        s.sampler.refresh(features)
    if tree_due:
        s.loss.fit_tree(features.to(s.device), labels.to(s.device))


def run_baseline(cfg: Config, run: RunDir, resume: str | Path | None = None) -> dict:
    """Train cfg.baseline.loss on cfg.data with labels; returns the final metrics (also in results.json). Under
    torchrun rank 0 evaluates and writes; every rank returns the results."""
    device = init_distributed(cfg.train.device)
    s = BaselineRun(cfg, device)
    if resume is not None:
        state = load_checkpoint(resume, map_location=device)
        s.load_state_dict(state)
        run.rewind_metrics(state)  # records logged after this checkpoint are redone, not repeated
        log.info("resumed from %s at epoch %d", resume, s.progress.epoch)
        run.log_metrics(resume_record(resume, epoch=s.progress.epoch, elapsed_s=round(s.progress.elapsed, 1)))
    p, b = s.progress, cfg.baseline
    started, elapsed0, resumed = time.perf_counter(), p.elapsed, resume is not None
    last_eval: dict = {}
    with stop_on_divergence(run):
        while p.epoch < b.epochs:
            lr = learning_rate(cfg, p.epoch, b.epochs)
            for group in s.optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            refresh_from_embeddings(s, p.epoch, resumed)
            resumed = False
            stats = train_one_epoch(s, p.epoch)
            p.epoch += 1
            # parameters and buffers (BatchNorm running statistics) finite before they are evaluated or saved
            check_finite_state({"model": s.model, "loss": s.loss}, f"after epoch {p.epoch}",
                               "lower optim.lr or baseline.loss_lr, or check baseline.loss_kwargs")
            record = {"stage": "baseline", "loss_name": b.loss, "epoch": p.epoch, "lr": lr, **stats}
            log.info(epoch_line(b.loss, p.epoch, b.epochs, {"loss": stats["loss"]}, stats["images_per_s"],
                                stats["sec_per_epoch"], b.epochs - p.epoch), extra=PROGRESS)
            if p.epoch % cfg.train.eval_every == 0 or p.epoch == b.epochs:
                last_eval = broadcast_object(evaluate_model(s.model, s.bank_loader, s.query_loader, cfg, device)
                                             if is_main() else None)
                record.update(last_eval)
                log.info("%s epoch %d: loss %.4f knn %.4f nmi %.4f acc %.4f ari %.4f linear %.4f%s", b.loss, p.epoch,
                         stats["loss"], *(last_eval[k] for k in ("knn_acc", "nmi", "acc", "ari")),
                         last_eval["linear_acc"], held_out_summary(last_eval))
            run.log_metrics(record, step=p.epoch, prefix="baseline/")
            p.elapsed = elapsed0 + time.perf_counter() - started
            if is_main():
                run.save_checkpoint(s.state_dict())
    if not last_eval:  # resumed from a finished run
        last_eval = broadcast_object(evaluate_model(s.model, s.bank_loader, s.query_loader, cfg, device)
                                     if is_main() else None)
    results = {**last_eval, "method": f"baseline:{b.loss}", "loss": b.loss, "miner": b.miner,
               "sampler": b.sampler, "experiment": cfg.experiment, "dataset": cfg.data.name, "seed": cfg.seed,
               "epochs": p.epoch, "wall_time_s": round(elapsed0 + time.perf_counter() - started, 1),
               "resumes": count_resumes(read_metrics(run.path)) if is_main() else None,
               "cluster_on": cfg.eval.cluster_on, "run_dir": str(run.path), "world_size": world_size(),
               **s.precision.as_dict()}
    if is_main():
        run.write_results(results)
        run.log_metrics({"stage": "final", **results})
    return broadcast_object(results)
