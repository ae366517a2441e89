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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .builders import build_encoder_from_config, build_eval_loaders, build_train_set, select_device
from .checkpoint import (RNG_KEYS, CheckpointError, check_fields, check_format, check_keys, load_checkpoint,
                         load_module_state, load_optimizer_state, rng_state, seed_everything,
                         set_rng_state)
from .config import Config, to_dict
from .data import DATASETS, MultiView, augment_tensor_batch, build_transform, dataset_targets
from .gan import Discriminator, EarlyStopping, Generator
from .memory_bank import MemoryBank
from .objective import ISLLoss
from .objective_fused import FusedISLLoss
from .positives import PositiveSets
from .progress import tqdm
from .rundir import RunDir, read_metrics
from .stages import gan_heldout, needs_second_view, pair_precision, train_encoder_epoch, train_gan_epoch
from .strategies import STRATEGIES, Strategy
from .training import check_same_config, evaluate_model, learning_rate, peak_memory_mb

log = logging.getLogger("isl")

CHECKPOINT_FORMAT = 2  # 2: per-stage counters in Progress, the GAN's EarlyStopping under "gan_stopper"


@dataclass
class Progress:
    """Where a run stands; each stage resumes from its own counters (all reset when a round ends)."""
    round: int = 0                 # 0: instance discrimination; 1..isl.rounds: mining rounds
    stage: str = "encoder"         # the stage of this round in progress (see run_isl), or "done"
    encoder_epochs: int = 0        # encoder epochs done in this round's encoder stage
    total_encoder_epochs: int = 0  # encoder epochs done in the whole run (seeds each epoch's shuffle)
    gan_epochs: int = 0            # GAN epochs done in this round
    d_gap: float | None = None     # D(real) - D(fake_pos) on held-out anchors, measured when mining starts
    mining_passes: int = 0         # mining passes done in this round
    mined_pairs: int = 0           # new pairs added in this round
    elapsed: float = 0.0           # seconds of training before this process (wall time across resumes)


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
        loss_cls = FusedISLLoss if cfg.isl.fused_objective else ISLLoss
        self.objective = loss_cls(cfg.isl.temperature, lam, l2_mean=cfg.isl.l2_mean)  # the one owner of tau
        n_views = 2 if needs_second_view(cfg, self.objective) else 1
        if DATASETS[cfg.data.name].in_memory:
            # digits, Fashion-MNIST: raw 1 x S x S tensors; the views are drawn on the whole batch at once
            self.train_set = build_train_set(cfg, transform=lambda x: x)
            self.batch_views = lambda x: torch.stack(
                [augment_tensor_batch(x, cfg.data.name, cfg.data.augment) for _ in range(n_views)], dim=1)
        else:
            views = MultiView(build_transform(cfg.data.name, train=True, preset=cfg.data.augment), n_views)
            self.train_set, self.batch_views = build_train_set(cfg, views), None
        n = len(self.train_set)
        if cfg.train.batch_size > n:
            raise ValueError(f"train.batch_size={cfg.train.batch_size} is larger than the training set ({n} "
                             f"images of {cfg.data.name}/{cfg.data.train_split}); lower train.batch_size")
        self.labels = dataset_targets(self.train_set).to(device)
        self.bank_loader, self.query_loader = build_eval_loaders(cfg)
        self.model = build_encoder_from_config(cfg).to(device)
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
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=gan.lr, betas=(gan.beta1, gan.beta2))
        self.gan_stopper = EarlyStopping(gan.patience, gan.min_delta)  # on D's held-out loss; reset each round
        self.rng = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # GAN, triplets, mining
        split = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 2)).to(device)
        held = max(1, n // 10)                                  # GAN monitoring only, never trained on
        self.gan_heldout_anchors, self.gan_train_anchors = split[:held], split[held:]
        self.progress = Progress()

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "config": to_dict(self.cfg), "progress": asdict(self.progress),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "bank": self.bank.state_dict(), "positives": self.positives.state_dict(),
                "G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "gan_stopper": self.gan_stopper.state_dict(),
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
        self.gan_stopper.load_state_dict(state["gan_stopper"])
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
                                 total_encoder_epochs=p.total_encoder_epochs, elapsed=p.elapsed)
        self.gan_stopper = EarlyStopping(self.cfg.isl.gan.patience, self.cfg.isl.gan.min_delta)

    def train_loader(self, epoch_seed: int) -> DataLoader:
        shuffle = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch_seed)
        return DataLoader(self.train_set, batch_size=self.cfg.train.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.cfg.data.num_workers, generator=shuffle,
                          pin_memory=self.device.type == "cuda")


class Checkpointer:
    """Writes the run's state after every epoch / pass; `stop_after` simulates a pre-empted job (tests)."""

    def __init__(self, s: ISLRun, run: RunDir, stop_after: int | None):
        self.s, self.run, self.stop_after, self.saves = s, run, stop_after, 0
        self.elapsed0, self.started = s.progress.elapsed, time.perf_counter()

    def __call__(self) -> None:
        self.s.progress.elapsed = self.elapsed0 + time.perf_counter() - self.started
        self.run.save_checkpoint(self.s.state_dict())  # with the count of metrics.jsonl records
        self.saves += 1
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
        stats = train_encoder_epoch(s.model, s.optimizer, s.train_loader(p.total_encoder_epochs), s.bank,
                                    s.positives, s.objective, cfg, s.device, desc=f"round {p.round} epoch {epoch}",
                                    batch_views=s.batch_views)
        p.encoder_epochs, p.total_encoder_epochs = epoch + 1, p.total_encoder_epochs + 1
        record = {"stage": "encoder", "round": p.round, "epoch": epoch + 1, "global_epoch": p.total_encoder_epochs,
                  "lr": lr, **stats, "pairs": s.positives.num_pairs(),
                  "pair_precision": pair_precision(s.positives, s.labels)}
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == n_epochs:
            last_eval = evaluate_model(s.model, s.bank_loader, s.query_loader, cfg, s.device)
            record.update(last_eval)
            log.info("round %d epoch %d: l1 %.4f l2 %.4f knn %.4f linear %.4f nmi %.4f acc %.4f ari %.4f", p.round,
                     epoch + 1, stats["l1"], stats["l2"],
                     *(last_eval[k] for k in ("knn_acc", "linear_acc", "nmi", "acc", "ari")))
        run.log_metrics(record, step=p.total_encoder_epochs, prefix="encoder/")
        save()
    return last_eval


def gan_done(s: ISLRun) -> bool:
    gan, done = s.cfg.isl.gan, s.progress.gan_epochs
    return done >= gan.max_epochs or (done >= gan.min_epochs and s.gan_stopper.bad_steps >= gan.patience)


def gan_stage(s: ISLRun, run: RunDir, save: Checkpointer) -> None:
    """GAN epochs on the frozen bank until D's held-out loss stops improving (at least min_epochs)."""
    gan, p = s.cfg.isl.gan, s.progress
    bar = tqdm(total=gan.max_epochs, initial=p.gan_epochs, desc=f"round {p.round} GAN", dynamic_ncols=True)
    while not gan_done(s):
        stats = train_gan_epoch(s.G, s.D, s.opt_g, s.opt_d, s.bank, s.positives, s.gan_train_anchors, s.cfg, s.rng)
        stats.update(gan_heldout(s.G, s.D, s.bank, s.positives, s.gan_heldout_anchors, s.cfg, s.rng))
        s.gan_stopper.step(stats["heldout_d_loss"])
        p.gan_epochs += 1
        run.log_metrics({"stage": "gan", "round": p.round, "epoch": p.gan_epochs, **stats},
                        step=(p.round - 1) * gan.max_epochs + p.gan_epochs, prefix="gan/")
        bar.update(1)
        bar.set_postfix(d=f"{stats['d_loss']:.3f}", g=f"{stats['g_loss']:.3f}")
        save()
    bar.close()


def mining_stage(s: ISLRun, run: RunDir, save: Checkpointer) -> None:
    """Mining passes with the strategy's miner until this round's quota of new pairs (a cap) is reached."""
    cfg, p, m = s.cfg, s.progress, s.cfg.isl.mining
    quota = int(m.quota * len(s.train_set))
    if p.d_gap is None:  # measured once per round, before the first pass (a resume keeps it)
        p.d_gap = float("inf")
        if "gan" in s.strategy.stages:  # mine only from a GAN whose D separates real from fake triplets
            q = gan_heldout(s.G, s.D, s.bank, s.positives, s.gan_heldout_anchors, cfg, s.rng)
            p.d_gap = q["heldout_d_real"] - q["heldout_d_fake_pos"]
    if p.d_gap <= cfg.isl.gan.min_d_gap:
        log.warning("round %d: D does not separate real from fake triplets on held-out anchors (gap %.4f <= "
                    "isl.gan.min_d_gap %.4f); skipping mining this round", p.round, p.d_gap, cfg.isl.gan.min_d_gap)
        return
    bar = tqdm(total=quota, initial=p.mined_pairs, desc=f"round {p.round} mining", dynamic_ncols=True)
    while p.mining_passes < m.max_passes and p.mined_pairs < quota:
        t0 = time.perf_counter()
        res = s.strategy.miner(s.bank.bank, s.positives, s.G, s.D, cfg, s.rng)
        pi, pj, room = res.pairs_i, res.pairs_j, quota - p.mined_pairs
        if pi.numel() > room:  # keep a random subset of this pass's candidates: the quota is a cap
            keep = torch.randperm(pi.numel(), generator=s.rng, device=pi.device)[:room]
            pi, pj = pi[keep], pj[keep]
        added = s.positives.add_pairs(pi, pj)
        p.mined_pairs += added
        p.mining_passes += 1
        bar.update(added)
        stats = {"candidate_pairs": int(res.pairs_i.numel()), "accepted_anchors": res.num_accepted_anchors,
                 "capped_anchors": res.num_capped}
        if res.scores is not None:
            stats["mean_best_score"] = float(res.scores.nanmean())
        run.log_metrics({"stage": "mining", "round": p.round, "pass": p.mining_passes, "new_pairs": added,
                         "pairs": s.positives.num_pairs(), "d_gap": p.d_gap,
                         "pair_precision": pair_precision(s.positives, s.labels),
                         "sec_per_pass": time.perf_counter() - t0, **stats},
                        step=p.round * m.max_passes + p.mining_passes, prefix="mining/")
        if added == 0:  # nothing within the radius anywhere: further passes would only repeat this one
            log.warning("round %d: mining pass %d added no pair; stopping this round's mining", p.round,
                        p.mining_passes)
            p.mining_passes = m.max_passes
        save()
    bar.close()
    log.info("round %d: %d new pairs (quota %d), %d pairs in all, precision %.3f", p.round, p.mined_pairs, quota,
             s.positives.num_pairs(), pair_precision(s.positives, s.labels))


STAGES = {"encoder": encoder_stage, "gan": gan_stage, "mining": mining_stage}


def run_isl(cfg: Config, run: RunDir, resume: str | Path | None = None, stop_after: int | None = None) -> dict:
    """Train ISL (or NPID / knn mining) as configured; returns the final metrics."""
    s = ISLRun(cfg, select_device(cfg.train.device))
    if resume is not None:
        state = load_checkpoint(resume, map_location=s.device)
        s.load_state_dict(state)
        run.rewind_metrics(state)  # records logged after this checkpoint are redone, not repeated
        log.info("resumed from %s at %s", resume, s.progress)
    save, last_eval = Checkpointer(s, run, stop_after), {}
    while s.progress.stage != "done":
        p = s.progress
        stages = s.round_stages(p.round)
        for name in stages[stages.index(p.stage):]:  # a resume starts at the stage in progress
            p.stage = name
            last_eval = STAGES[name](s, run, save) or last_eval
        s.end_round()
    p = s.progress
    if not last_eval:  # resumed after the last evaluation
        last_eval = evaluate_model(s.model, s.bank_loader, s.query_loader, cfg, s.device)
    p.elapsed = save.elapsed0 + time.perf_counter() - save.started
    passes = [r["sec_per_pass"] for r in read_metrics(run.path) if r.get("stage") == "mining"]
    results = {**last_eval, "method": s.strategy.method, "experiment": cfg.experiment, "dataset": cfg.data.name,
               "mining_sec_per_pass": sum(passes) / len(passes) if passes else None,
               "peak_memory_mb": round(peak_memory_mb(), 1), "num_train": len(s.train_set),
               "seed": cfg.seed, "pairs": s.positives.num_pairs(),
               "pair_precision": pair_precision(s.positives, s.labels), "epochs": p.total_encoder_epochs,
               "wall_time_s": round(p.elapsed, 1), "cluster_on": cfg.eval.cluster_on}
    run.save_checkpoint(s.state_dict())
    run.write_results(results)
    run.log_metrics({"stage": "final", **results})
    return results
