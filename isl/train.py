"""The ISL round loop (Wang et al., ICCV 2021) with exact, atomic checkpoint/resume.

    round 0:        encoder epochs with P_i = {i}            (instance discrimination, NPID)
    round 1..R:     GAN epochs on frozen bank features (early stop) -> mining passes until the round's quota
                    -> encoder epochs with the grown positive sets (so the last mined pairs are trained on)

`isl.mining.strategy`: gan (ISL) | knn (plain Euclidean neighbours, no GAN) | none (NPID: the same encoder
epochs, no mining). A checkpoint is written after every epoch and every mining pass; `run_isl(..., resume=path)`
continues bit-identically on CPU.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .amp import grad_scaler, resolve_precision, to_memory_format
from .builders import (build_encoder_from_config, build_eval_loaders, build_raw_train_set, build_train_set,
                       loader_workers, uses_batched_augment)
from .checkpoint import (RNG_KEYS, CheckpointError, check_fields, check_format, check_keys, load_checkpoint,
                         load_module_state, load_optimizer_state, rng_state, seed_everything,
                         set_rng_state)
from .config import Config, to_dict
from .distributed import (all_gather_batch, broadcast_object, check_same, init_distributed, is_main, per_rank_batch,
                          rank_seed, shard_loader, world_size, wrap_model)
from .data import MultiView, build_transform, dataset_targets
from .data.transforms import augment_raw_batch, augment_views
from .experiments.collect import mining_diagnostics
from .gan import Discriminator, EarlyStopping, Generator
from .hardware import describe, tune_allocator
from .memory_bank import MemoryBank
from .mining import mine_knn, select_pairs
from .objective import ISLLoss
from .objective_chunked import ChunkedISLLoss
from .objective_fused import FusedISLLoss, use_compile
from .positives import PositiveSets
from .progress import PROGRESS, epoch_line, tqdm
from .rundir import RunDir, count_resumes, read_metrics, resume_record
from .stages import (fresh_discriminator_auc, gan_heldout, needs_second_view, pair_precision, train_encoder_epoch,
                     train_gan_epoch)
from .strategies import STRATEGIES, Strategy
from .training import (check_finite_state, check_same_config, evaluate_model, held_out_summary, learning_rate,
                       peak_memory_mb, stop_on_divergence)

log = logging.getLogger("isl")

CHECKPOINT_FORMAT = 3  # 2: per-stage counters, the GAN's EarlyStopping; 3: D's AUCs in Progress


@dataclass
class Progress:
    """Where a run stands; each stage resumes from its own counters (all reset when a round ends)."""
    round: int = 0                 # 0: instance discrimination; 1..isl.rounds: mining rounds
    stage: str = "encoder"         # the stage of this round in progress (see run_isl), or "done"
    encoder_epochs: int = 0        # encoder epochs done in this round's encoder stage
    total_encoder_epochs: int = 0  # encoder epochs done in the whole run (seeds each epoch's shuffle)
    gan_epochs: int = 0            # GAN epochs done in this round
    d_gap: float | None = None     # D(real) - D(fake_pos) on held-out anchors, measured when mining starts
    d_auc: float | None = None     # the co-trained D's held-out AUC, real vs fake triplets (same moment)
    fresh_d_auc: float | None = None  # a freshly trained D's held-out AUC on the frozen G (diagnostic)
    mining_passes: int = 0         # mining passes done in this round
    mined_pairs: int = 0           # new pairs added in this round
    elapsed: float = 0.0           # seconds of training before this process (wall time across resumes)
    checkpoints: int = 0           # checkpoints written in the whole run, this one included


class StopRun(Exception):
    """Raised after `stop_after` checkpoints (tests; simulates a pre-empted job)."""


class ISLRun:
    """Everything a run holds; built from the config, then (optionally) loaded from a checkpoint."""

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg, self.device = cfg, device
        seed_everything(cfg.seed)
        self.strategy: Strategy = STRATEGIES[cfg.isl.mining.strategy]
        # a strategy without L2 (none) is NPID (Wu et al. 2018) exactly: L1 with P_i = {i}
        lam = cfg.isl.lam if self.strategy.uses_l2 else 0.0
        if cfg.isl.bank_chunk:  # the objective over bank chunks: no B x N tensor (isl/objective_chunked.py)
            self.objective = ChunkedISLLoss(cfg.isl.temperature, lam, cfg.isl.l2_mean, chunk_size=cfg.isl.bank_chunk)
        else:
            loss_cls = FusedISLLoss if cfg.isl.fused_objective else ISLLoss
            self.objective = loss_cls(cfg.isl.temperature, lam, l2_mean=cfg.isl.l2_mean)  # the one owner of tau
        n_views = 2 if needs_second_view(cfg, self.objective) else 1
        if uses_batched_augment(cfg):
            # raw images (digits, Fashion-MNIST: 1 x S x S float; CIFAR, STL-10, SVHN: C x H x W uint8); the views
            # are drawn on the whole batch at once, on the training device, from torch's global RNG (checkpointed)
            self.train_set = build_raw_train_set(cfg)
            self.batch_views = lambda x: augment_views(x, cfg.data.name, cfg.data.augment, n_views)
        else:  # data.augment_backend=pil: the DataLoader's workers draw the views image by image
            views = MultiView(build_transform(cfg.data.name, train=True, preset=cfg.data.augment), n_views)
            self.train_set, self.batch_views = build_train_set(cfg, views), None
        self.train_workers = loader_workers(cfg, per_image=self.batch_views is None)
        # build_train_set refused a batch larger than the training set; under torchrun the global batch
        # must also split evenly over the ranks
        per_rank_batch(cfg.train.batch_size)
        n = len(self.train_set)
        if not cfg.isl.bank_chunk and use_compile(cfg.isl.compile_objective, lam, cfg.train.batch_size * n, device):
            # the fused form with its B x N pass compiled, where the bank is large enough to repay the compile
            self.objective = FusedISLLoss(cfg.isl.temperature, lam, l2_mean=cfg.isl.l2_mean, compile=True)
        self.labels = dataset_targets(self.train_set).to(device)
        self.bank_loader, self.query_loader = build_eval_loaders(cfg)
        if device.type == "cpu":
            tune_allocator()  # B x N temporaries reused, not page-faulted in every step (isl/hardware.py)
        self.precision = resolve_precision(cfg.train.amp, cfg.train.channels_last, device)  # the autos decided
        log.info("%s: encoder in %s, channels_last %s", describe(device),
                 "float32" if self.precision.amp == "off" else f"{self.precision.amp} autocast",
                 "on" if self.precision.channels_last else "off")
        self.model = to_memory_format(build_encoder_from_config(cfg).to(device), self.precision.channels_last)
        self.scaler = grad_scaler(device, self.precision.amp)  # fp16 only; bf16 / off: a disabled pass-through
        # the encoder's training forward: DistributedDataParallel under torchrun, the model itself otherwise
        self.model, self.train_model = wrap_model(self.model, cfg.train.sync_bn, device)
        o = cfg.optim
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum,
                                         weight_decay=o.weight_decay)
        self.bank = MemoryBank(n, cfg.model.low_dim, momentum=cfg.isl.bank_momentum,
                               generator=torch.Generator().manual_seed(cfg.seed)).to(device)
        self.positives = PositiveSets(n).to(device)
        gan = cfg.isl.gan
        self.G = Generator(cfg.model.low_dim, noise_dim=gan.noise_dim).to(device)
        self.D = Discriminator(cfg.model.low_dim).to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=gan.lr, betas=(gan.beta1, gan.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=gan.d_lr or gan.lr, betas=(gan.beta1, gan.beta2))
        self.gan_stopper = self.new_gan_stopper()  # on D's held-out loss or AUC; reset each round
        self.gan_best: dict | None = None  # stop=auc: G and D at the best held-out AUC of this round
        self._views: tuple[int, torch.Tensor | None] | None = None  # (round, V x N x d), see views_of_round
        self.rng = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # GAN, triplets, mining
        split = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 2)).to(device)
        held = max(1, n // 10)                                  # GAN monitoring only, never trained on
        self.gan_heldout_anchors, self.gan_train_anchors = split[:held], split[held:]
        self.progress = Progress()

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "config": to_dict(self.cfg), "progress": asdict(self.progress),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "bank": self.bank.state_dict(), "positives": self.positives.state_dict(),
                "G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "gan_stopper": self.gan_stopper.state_dict(),
                "gan_best": self.gan_best,
                "gen": self.rng.get_state(), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Check the format, every key, every progress field and every tensor shape first (one-line CheckpointError
        naming what differs), then load; nothing is filled in with defaults."""
        check_format(state, CHECKPOINT_FORMAT)
        check_keys(state, self.state_dict().keys())
        check_same_config(state["config"], self.cfg)
        check_fields(state["progress"], asdict(self.progress), "progress")
        check_keys(state["rng"], RNG_KEYS, "checkpoint's rng")
        for name, module, variable in (("model", self.model, ()), ("bank", self.bank, ()),
                                       ("positives", self.positives, ("indices",)), ("G", self.G, ()),
                                       ("D", self.D, ())):
            load_module_state(module, state[name], name, variable)
        for name, opt in (("optimizer", self.optimizer), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            load_optimizer_state(opt, state[name], name)
        check_fields(state["gan_stopper"], self.gan_stopper.state_dict(), "gan_stopper")
        self.scaler.load_state_dict(state["scaler"])  # {} from a run without fp16: ignored when disabled
        self.gan_stopper.load_state_dict(state["gan_stopper"])
        self.gan_best = state["gan_best"]
        try:
            self.rng.set_state(state["gen"])
        except (RuntimeError, TypeError) as err:
            raise CheckpointError(f"checkpoint's gen (the run's generator) cannot be restored: {err}") from None
        set_rng_state(state["rng"])
        self.progress = Progress(**state["progress"])

    def round_stages(self, rnd: int) -> tuple[str, ...]:
        """Round 0 trains the encoder with P_i = {i}; a mining round runs its strategy's stages, then the encoder."""
        return ("encoder",) if rnd == 0 else (*self.strategy.stages, "encoder")

    def end_round(self) -> None:
        """Fresh per-round counters and GAN early stopping for the next round, or stage "done" after the last."""
        p = self.progress
        if p.round == self.cfg.isl.rounds:
            p.stage = "done"
            return
        self.progress = Progress(round=p.round + 1, stage=self.round_stages(p.round + 1)[0],
                                 total_encoder_epochs=p.total_encoder_epochs, elapsed=p.elapsed,
                                 checkpoints=p.checkpoints)
        self.gan_stopper, self.gan_best = self.new_gan_stopper(), None

    def new_gan_stopper(self) -> EarlyStopping:
        gan = self.cfg.isl.gan
        return EarlyStopping(gan.patience, gan.min_delta, mode="max" if gan.stop == "auc" else "min")

    def needs_views(self) -> bool:
        """Whether the GAN's triplets use the encoder's features of augmented views (isl.gan.anchor / positive)."""
        gan = self.cfg.isl.gan
        return "gan" in self.strategy.stages and (gan.anchor == "view" or gan.positive_source == "other")

    def derived_generator(self, purpose: int) -> torch.Generator:
        """A generator seeded by (seed, round, purpose): draws that must not move `self.rng` (so a resume that
        repeats them stays exact) and that give the same values when repeated."""
        seed = (self.cfg.seed * 1_000_003 + self.progress.round * 101 + purpose) % (2**63)
        return torch.Generator(device=self.device).manual_seed(seed)

    @torch.no_grad()
    def views_of_round(self) -> torch.Tensor | None:
        """isl.gan.num_views x N x d: the frozen encoder's features of fresh augmented views of every training
        image (eval mode), or None when the config needs none. Drawn once per round from a seed of (seed,
        round), so a resumed run recomputes the same tensors instead of storing them in the checkpoint."""
        rnd = self.progress.round
        if self._views is not None and self._views[0] == rnd:
            return self._views[1]
        views = None
        if self.needs_views():
            cfg, n = self.cfg, len(self.train_set)
            out = torch.empty(cfg.isl.gan.num_views, n, cfg.model.low_dim, device=self.device)
            seed = (cfg.seed * 1_000_003 + rnd * 101 + 7) % (2**63)
            was_training = self.model.training
            self.model.eval()
            loader = DataLoader(self.train_set, batch_size=max(cfg.train.batch_size, 256), shuffle=False,
                                num_workers=self.train_workers)
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(seed)  # every augmentation draw below comes from this seed
                for v in range(out.shape[0]):
                    for images, _, idx in loader:
                        images = images.to(self.device)
                        if self.batch_views is not None:  # raw images: one batched augmentation, on the device
                            images = augment_raw_batch(images, cfg.data.name, cfg.data.augment)
                        else:                             # the loader's transform drew the views
                            images = images[:, 0]
                        out[v, idx.to(self.device)] = self.model(images).float()
            self.model.train(was_training)
            views = out
        self._views = (rnd, views)
        return views

    def train_loader(self, epoch_seed: int) -> DataLoader:
        """Batches of one encoder epoch; under torchrun this rank's share of each global batch (same order)."""
        shuffle = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch_seed)
        if world_size() > 1:
            return shard_loader(self.train_set, self.cfg.train.batch_size, shuffle,
                                num_workers=self.train_workers, pin_memory=self.device.type == "cuda")
        return DataLoader(self.train_set, batch_size=self.cfg.train.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.train_workers, generator=shuffle,
                          pin_memory=self.device.type == "cuda")


class Checkpointer:
    """Writes the run's state after every epoch / pass; `stop_after` simulates a pre-empted job (tests).

    Fault injection (tests/test_fault_injection.py): with ISL_FAULT_KILL_AT=k1,k2,... in the environment the
    process SIGKILLs itself right after writing the run's checkpoint number k (counted over the whole run,
    resumes included, `Progress.checkpoints`).
    """

    def __init__(self, s: ISLRun, run: RunDir, stop_after: int | None):
        self.s, self.run, self.stop_after, self.saves = s, run, stop_after, 0
        self.elapsed0, self.started = s.progress.elapsed, time.perf_counter()
        kill_at = os.environ.get("ISL_FAULT_KILL_AT", "")
        self.kill_at = {int(k) for k in kill_at.split(",") if k.strip()}

    def __call__(self) -> None:
        s, p = self.s, self.s.progress
        check_finite_state({"model": s.model, "bank": s.bank, "G": s.G, "D": s.D},
                           f"after round {p.round}'s {p.stage} step", "lower optim.lr (encoder) or isl.gan.lr / "
                           "isl.gan.d_lr / isl.gan.alpha (GAN)")
        p.elapsed = self.elapsed0 + time.perf_counter() - self.started
        p.checkpoints += 1
        if is_main():  # under torchrun rank 0 writes; every rank holds the same state
            self.run.save_checkpoint(self.s.state_dict())  # with the count of metrics.jsonl records
        self.saves += 1
        if p.checkpoints in self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.stop_after is not None and self.saves >= self.stop_after:
            raise StopRun(f"stopped after {self.saves} checkpoints")


def encoder_stage(s: ISLRun, run: RunDir, save: Checkpointer) -> dict:
    """Encoder epochs of L1 + lambda L2 with the current positive sets; returns the last evaluation."""
    cfg, p = s.cfg, s.progress
    n_epochs = cfg.train.epochs_first if p.round == 0 else cfg.train.epochs_per_round
    last_eval: dict = {}
    for epoch in tqdm(range(p.encoder_epochs, n_epochs), desc=f"round {p.round} encoder", dynamic_ncols=True,
                      initial=p.encoder_epochs, total=n_epochs):
        lr = learning_rate(cfg, epoch, n_epochs)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        distributed = world_size() > 1
        if distributed:  # each rank augments its own images: its own stream, seeded per epoch (exact resume)
            torch.manual_seed(rank_seed(cfg.seed, p.total_encoder_epochs))
        stats = train_encoder_epoch(s.train_model, s.optimizer, s.train_loader(p.total_encoder_epochs), s.bank,
                                    s.positives, s.objective, cfg, s.device, desc=f"round {p.round} epoch {epoch}",
                                    batch_views=s.batch_views, scaler=s.scaler, precision=s.precision,
                                    gather=all_gather_batch if distributed else None)
        p.encoder_epochs, p.total_encoder_epochs = epoch + 1, p.total_encoder_epochs + 1
        run_epochs = cfg.train.epochs_first + cfg.isl.rounds * cfg.train.epochs_per_round
        losses = {"loss": stats["loss"], **({"l1": stats["l1"], "l2": stats["l2"]} if s.objective.lam else {})}
        log.info(epoch_line(f"round {p.round} encoder", epoch + 1, n_epochs, losses, stats["images_per_s"],
                            stats["sec_per_epoch"], run_epochs - p.total_encoder_epochs), extra=PROGRESS)
        record = {"stage": "encoder", "round": p.round, "epoch": epoch + 1, "global_epoch": p.total_encoder_epochs,
                  "lr": lr, **stats, "pairs": s.positives.num_pairs(),
                  "pair_precision": pair_precision(s.positives, s.labels)}
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == n_epochs:
            # rank 0 evaluates (the others would repeat the same numbers); they wait for its result
            last_eval = broadcast_object(evaluate_model(s.model, s.bank_loader, s.query_loader, cfg, s.device)
                                         if is_main() else None)
            record.update(last_eval)
            log.info("round %d epoch %d: l1 %.4f l2 %.4f knn %.4f linear %.4f nmi %.4f acc %.4f ari %.4f%s", p.round,
                     epoch + 1, stats["l1"], stats["l2"],
                     *(last_eval[k] for k in ("knn_acc", "linear_acc", "nmi", "acc", "ari")),
                     held_out_summary(last_eval))
        run.log_metrics(record, step=p.total_encoder_epochs, prefix="encoder/")
        save()
    return last_eval


def gan_done(s: ISLRun) -> bool:
    gan, done = s.cfg.isl.gan, s.progress.gan_epochs
    if done >= gan.max_epochs or gan.stop == "budget":
        return done >= gan.max_epochs
    return done >= gan.min_epochs and s.gan_stopper.bad_steps >= gan.patience


def epoch_views(views: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """The view features of GAN epoch / mining pass k (the round's views in turn): N x d or None."""
    return None if views is None else views[k % views.shape[0]]


def gan_stage(s: ISLRun, run: RunDir, save: Checkpointer) -> None:
    """GAN epochs on the frozen features until isl.gan.stop says so: D's held-out loss or AUC stops improving
    (at least min_epochs), or max_epochs (budget). With stop=auc, G and D end at their best held-out AUC among
    the epochs from min_epochs on: D's AUC is highest while G is still untrained (its proxies lie far from every
    image and are trivially fake), so the first min_epochs - 1 epochs are warm-up, neither counted nor kept."""
    gan, p = s.cfg.isl.gan, s.progress
    views = s.views_of_round()
    bar = tqdm(total=gan.max_epochs, initial=p.gan_epochs, desc=f"round {p.round} GAN", dynamic_ncols=True)
    while not gan_done(s):
        t0 = time.perf_counter()
        v = epoch_views(views, p.gan_epochs)
        stats = train_gan_epoch(s.G, s.D, s.opt_g, s.opt_d, s.bank, s.positives, s.gan_train_anchors, s.cfg, s.rng,
                                views=v)
        stats.update(gan_heldout(s.G, s.D, s.bank, s.positives, s.gan_heldout_anchors, s.cfg, s.rng, views=v))
        if gan.stop == "loss":
            s.gan_stopper.step(stats["heldout_d_loss"])
        elif gan.stop == "auc" and p.gan_epochs + 1 >= gan.min_epochs:  # earlier epochs: warm-up, G untrained
            s.gan_stopper.step(stats["heldout_auc"])
            if s.gan_stopper.bad_steps == 0:  # a new best held-out AUC: keep G and D
                s.gan_best = {"G": {k: v.clone() for k, v in s.G.state_dict().items()},
                              "D": {k: v.clone() for k, v in s.D.state_dict().items()}, "epoch": p.gan_epochs + 1}
        p.gan_epochs += 1
        log.info("round %d GAN epoch %d/%d: d_loss %.4f g_loss %.4f held-out AUC %.3f | %.1f s/epoch", p.round,
                 p.gan_epochs, gan.max_epochs, stats["d_loss"], stats["g_loss"], stats["heldout_auc"],
                 time.perf_counter() - t0, extra=PROGRESS)
        run.log_metrics({"stage": "gan", "round": p.round, "epoch": p.gan_epochs, **stats},
                        step=(p.round - 1) * gan.max_epochs + p.gan_epochs, prefix="gan/")
        bar.update(1)
        bar.set_postfix(d=f"{stats['d_loss']:.3f}", g=f"{stats['g_loss']:.3f}", auc=f"{stats['heldout_auc']:.3f}")
        save()
    bar.close()
    if s.gan_best is not None and s.gan_best["epoch"] != p.gan_epochs:  # mine with the most informative D
        s.G.load_state_dict(s.gan_best["G"]), s.D.load_state_dict(s.gan_best["D"])
        log.info("round %d: G and D restored to GAN epoch %d, the best held-out AUC (%.3f)", p.round,
                 s.gan_best["epoch"], s.gan_stopper.best)


def gan_diagnostics(s: ISLRun, views: torch.Tensor | None) -> dict:
    """How informative the round's GAN is, measured once before its first mining pass: the co-trained D's
    held-out scores and AUC, and the AUC of a D trained afresh on the frozen G. Drawn from derived generators
    inside `fork_rng`, so repeating them on a resume changes no other random draw."""
    cfg = s.cfg
    v = epoch_views(views, 0)
    with torch.random.fork_rng(devices=[s.device] if s.device.type == "cuda" else []):
        torch.manual_seed(s.derived_generator(1).initial_seed())
        q = gan_heldout(s.G, s.D, s.bank, s.positives, s.gan_heldout_anchors, cfg, s.derived_generator(2), views=v)
        fresh = {}
        if cfg.isl.gan.diag_steps:
            fresh = fresh_discriminator_auc(s.G, s.bank, s.positives, s.gan_train_anchors, s.gan_heldout_anchors,
                                            cfg, s.derived_generator(3), views=v)
    return {**q, **fresh}


def mining_stage(s: ISLRun, run: RunDir, save: Checkpointer) -> None:
    """Mining passes with the strategy's miner until this round's quota of new pairs (a cap) is reached."""
    cfg, p, m = s.cfg, s.progress, s.cfg.isl.mining
    quota = int(m.quota * len(s.train_set)) // (2 if m.quota_count == "directed" else 1)
    fill = s.strategy.fill or m.fill
    uses_gan = "gan" in s.strategy.stages
    views = s.views_of_round()
    if p.d_gap is None:  # measured once per round, before the first pass (a resume keeps it)
        p.d_gap = float("inf")
        if uses_gan:  # mine only from a GAN whose D separates real from fake triplets
            diag = gan_diagnostics(s, views)
            p.d_gap = diag["heldout_d_real"] - diag["heldout_d_fake_pos"]
            p.d_auc, p.fresh_d_auc = diag["heldout_auc"], diag.get("fresh_d_auc")
            run.log_metrics({"stage": "gan_diag", "round": p.round, **diag}, step=p.round, prefix="gan_diag/")
            log.info("round %d: co-trained D held-out AUC %.3f (real vs (a, g, n) %.3f); fresh D AUC %s",
                     p.round, diag["heldout_auc"], diag["heldout_auc_pos"],
                     f"{diag['fresh_d_auc']:.3f}" if "fresh_d_auc" in diag else "off")
    if p.d_gap <= cfg.isl.gan.min_d_gap:
        log.warning("round %d: D does not separate real from fake triplets on held-out anchors (gap %.4f <= "
                    "isl.gan.min_d_gap %.4f); skipping mining this round", p.round, p.d_gap, cfg.isl.gan.min_d_gap)
        return
    if uses_gan and p.d_auc is not None and p.d_auc <= cfg.isl.gan.min_auc:
        log.warning("round %d: D's held-out AUC %.3f <= isl.gan.min_auc %.3f: D has not learned to tell real from "
                    "fake triplets; skipping mining this round", p.round, p.d_auc, cfg.isl.gan.min_auc)
        return
    bar = tqdm(total=quota, initial=p.mined_pairs, desc=f"round {p.round} mining", dynamic_ncols=True)
    while p.mining_passes < m.max_passes and p.mined_pairs < quota:
        t0 = time.perf_counter()
        res = s.strategy.miner(s.bank.bank, s.positives, s.G, s.D, cfg, s.rng,
                               views=epoch_views(views, p.mining_passes))
        pi, pj = select_pairs(res, quota - p.mined_pairs, fill, s.rng, len(s.train_set))
        added = s.positives.add_pairs(pi, pj)
        p.mined_pairs += added
        p.mining_passes += 1
        bar.update(added)
        log.info("round %d mining pass %d/%d: %d new pairs (%d of the quota %d) | %.1f s/pass", p.round,
                 p.mining_passes, m.max_passes, added, p.mined_pairs, quota, time.perf_counter() - t0, extra=PROGRESS)
        stats = {"candidate_pairs": int(res.pairs_i.numel()), "accepted_anchors": res.num_accepted_anchors,
                 "capped_anchors": res.num_capped, **(res.diagnostics or {})}
        if res.scores is not None:
            stats["mean_best_score"] = float(res.scores.nanmean())
        if uses_gan:  # monitoring: are the GAN's pairs ones plain knn would also have found?
            stats.update(knn_overlap(pi, pj, s.bank.bank, s.positives, s.labels, cfg))
        run.log_metrics({"stage": "mining", "round": p.round, "pass": p.mining_passes, "new_pairs": added,
                         "pairs": s.positives.num_pairs(), "d_gap": p.d_gap, "d_auc": p.d_auc,
                         "pair_precision": pair_precision(s.positives, s.labels),
                         **s.positives.coverage(s.labels), "sec_per_pass": time.perf_counter() - t0, **stats},
                        step=p.round * m.max_passes + p.mining_passes, prefix="mining/")
        if added == 0:  # nothing within the radius anywhere: further passes would only repeat this one
            log.warning("round %d: mining pass %d added no pair; stopping this round's mining", p.round,
                        p.mining_passes)
            p.mining_passes = m.max_passes
        save()
    bar.close()
    log.info("round %d: %d new pairs (quota %d), %d pairs in all, precision %.3f, anchors with a mined positive "
             "%.3f", p.round, p.mined_pairs, quota, s.positives.num_pairs(), pair_precision(s.positives, s.labels),
             s.positives.coverage(s.labels)["pair_coverage"])


def knn_overlap(pi: torch.Tensor, pj: torch.Tensor, bank: torch.Tensor, positives: PositiveSets,
                labels: torch.Tensor, cfg: Config) -> dict:
    """Of the pairs a GAN pass selected: the fraction plain knn mining (same r, topk) would also find, and the
    label precision of those shared pairs and of the GAN-only ones (labels for monitoring only)."""
    m, n = cfg.isl.mining, positives.num_samples
    knn = mine_knn(torch.arange(n, device=bank.device), bank, positives, radius=m.radius, topk=m.topk or None,
                   chunk_size=m.chunk_size, backend=cfg.eval.backend, exclude_existing=False)
    key = lambda i, j: torch.minimum(i, j) * n + torch.maximum(i, j)
    knn_keys = torch.unique(key(knn.pairs_i, knn.pairs_j))
    if pi.numel() == 0:
        return {"frac_knn_shared": float("nan"), "precision_shared": float("nan"), "precision_gan_only": float("nan")}
    shared = torch.isin(key(pi, pj), knn_keys)
    same = labels[pi] == labels[pj]
    prec = lambda mask: float(same[mask].double().mean()) if bool(mask.any()) else float("nan")
    return {"frac_knn_shared": float(shared.double().mean()), "precision_shared": prec(shared),
            "precision_gan_only": prec(~shared)}


def last_gan_diagnostics(run: RunDir) -> dict:
    """GAN diagnostics for results.json (None without a GAN): the last round's D held-out AUC and fresh-D AUC,
    and the means over the run's mining passes of cos(g*, a / p / n) and of the knn-overlap precisions."""
    records = read_metrics(run.path)
    diags = [r for r in records if r.get("stage") == "gan_diag"]
    last = diags[-1] if diags else {}
    return {"d_auc": last.get("heldout_auc"), "fresh_d_auc": last.get("fresh_d_auc"), **mining_diagnostics(records)}


STAGES = {"encoder": encoder_stage, "gan": gan_stage, "mining": mining_stage}


def run_isl(cfg: Config, run: RunDir, resume: str | Path | None = None, stop_after: int | None = None) -> dict:
    """Train ISL (or NPID / knn mining) as configured; returns the final metrics (on every rank under torchrun;
    there `run` is rank 0's RunDir and the others' FollowerRunDir, see isl/distributed.py)."""
    s = ISLRun(cfg, init_distributed(cfg.train.device))
    if resume is not None:
        state = load_checkpoint(resume, map_location=s.device)
        s.load_state_dict(state)
        run.rewind_metrics(state)  # records logged after this checkpoint are redone, not repeated
        log.info("resumed from %s at %s", resume, s.progress)
        p = s.progress  # the resume itself is part of the run's record (results.json counts them)
        run.log_metrics(resume_record(resume, round=p.round, stage=p.stage, elapsed_s=round(p.elapsed, 1)))
    save, last_eval = Checkpointer(s, run, stop_after), {}
    with stop_on_divergence(run):
        while s.progress.stage != "done":
            p = s.progress
            stages = s.round_stages(p.round)
            for name in stages[stages.index(p.stage):]:  # a resume starts at the stage in progress
                p.stage = name
                last_eval = STAGES[name](s, run, save) or last_eval
                check_same(f"bank, positive sets or G / D after the {name} stage of round {p.round}", s.bank.bank,
                           s.positives.indptr, s.positives.indices, *s.G.parameters(), *s.D.parameters())
            s.end_round()
    p = s.progress
    if not last_eval:  # resumed after the last evaluation
        last_eval = broadcast_object(evaluate_model(s.model, s.bank_loader, s.query_loader, cfg, s.device)
                                     if is_main() else None)
    p.elapsed = save.elapsed0 + time.perf_counter() - save.started
    results = None
    if is_main():
        records = read_metrics(run.path)
        passes = [r["sec_per_pass"] for r in records if r.get("stage") == "mining"]
        results = {**last_eval, "method": s.strategy.method, "experiment": cfg.experiment, "dataset": cfg.data.name,
                   "mining_sec_per_pass": sum(passes) / len(passes) if passes else None,
                   "peak_memory_mb": round(peak_memory_mb(), 1), "num_train": len(s.train_set),
                   "seed": cfg.seed, "pairs": s.positives.num_pairs(),
                   "pair_precision": pair_precision(s.positives, s.labels), **s.positives.coverage(s.labels),
                   "epochs": p.total_encoder_epochs,
                   "wall_time_s": round(p.elapsed, 1), "resumes": count_resumes(records),
                   "cluster_on": cfg.eval.cluster_on, "world_size": world_size(), **s.precision.as_dict(),
                   **last_gan_diagnostics(run)}
        run.save_checkpoint(s.state_dict())
        run.write_results(results)
        run.log_metrics({"stage": "final", **results})
    return broadcast_object(results)
