"""The ISL round loop (Wang et al., ICCV 2021) with exact, atomic checkpoint/resume.

    round 0:        encoder epochs with P_i = {i}            (instance discrimination, NPID)
    round 1..R:     GAN epochs on frozen bank features (early stop) -> mining passes until the round's quota
                    -> encoder epochs with the grown positive sets (so the last mined pairs are trained on)

`isl.mining.strategy`: gan (ISL) | knn (plain Euclidean neighbours, no GAN) | none (NPID: the same encoder
epochs, no mining). A checkpoint is written after every epoch and every mining pass; `run_isl(..., resume=path)`
continues bit-identically on CPU.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from .progress import tqdm

from .builders import build_encoder_from_config, build_eval_loaders, build_train_set, select_device
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .config import Config, to_dict
from .data import DATASETS, MultiView, augment_tensor_batch, build_transform, dataset_targets
from .gan import Discriminator, EarlyStopping, Generator
from .memory_bank import MemoryBank
from .objective import ISLLoss
from .positives import PositiveSets
from .rundir import RunDir, read_metrics
from .stages import (gan_heldout, mining_pass, needs_second_view, pair_precision, train_encoder_epoch,
                     train_gan_epoch)
from .training import check_same_config, evaluate_model, learning_rate, peak_memory_mb

log = logging.getLogger("isl")

class Stage(str, enum.Enum):
    ENCODER = "encoder"
    GAN = "gan"
    MINING = "mining"
    DONE = "done"


@dataclass
class Progress:
    stage: str = Stage.ENCODER.value
    round: int = 0
    epoch: int = 0                 # completed epochs (or mining passes) in the current stage
    global_epoch: int = 0          # completed encoder epochs in the whole run
    gan_best: float | None = None   # EarlyStopping state of the GAN stage
    gan_bad_epochs: int = 0
    round_new_pairs: int = 0
    elapsed: float = 0.0           # seconds of training before this process (for wall time across resumes)


class StopRun(Exception):
    """Raised after `stop_after` checkpoints (tests; simulates a pre-empted job)."""


class ISLRun:
    """Everything a run holds; built from the config, then (optionally) loaded from a checkpoint."""

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg, self.device = cfg, device
        seed_everything(cfg.seed)
        # strategy none is NPID (Wu et al. 2018) exactly: L1 with P_i = {i} and no L2 term
        lam = 0.0 if cfg.isl.mining.strategy == "none" else cfg.isl.lam
        self.objective = ISLLoss(cfg.isl.temperature, lam)
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
        g = cfg.isl.gan
        self.G = Generator(cfg.model.low_dim, noise_dim=g.noise_dim).to(device)
        self.D = Discriminator(cfg.model.low_dim).to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=g.lr, betas=(g.beta1, g.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=g.lr, betas=(g.beta1, g.beta2))
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # GAN, triplets, mining
        split = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + 2)).to(device)
        held = max(1, n // 10)                                  # GAN monitoring only, never trained on
        self.gan_heldout_anchors, self.gan_train_anchors = split[:held], split[held:]
        self.progress = Progress()

    def state_dict(self) -> dict:
        return {"config": to_dict(self.cfg), "progress": asdict(self.progress), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "bank": self.bank.state_dict(),
                "positives": self.positives.state_dict(), "G": self.G.state_dict(), "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "gen": self.gen.get_state(), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        check_same_config(state["config"], self.cfg)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bank.load_state_dict(state["bank"])
        self.positives.load_state_dict(state["positives"])
        self.G.load_state_dict(state["G"]), self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"]), self.opt_d.load_state_dict(state["opt_d"])
        self.gen.set_state(state["gen"])
        set_rng_state(state["rng"])
        self.progress = Progress(**state["progress"])

    def train_loader(self, epoch_seed: int) -> DataLoader:
        shuffle = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch_seed)
        return DataLoader(self.train_set, batch_size=self.cfg.train.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.cfg.data.num_workers, generator=shuffle,
                          pin_memory=self.device.type == "cuda")


def _stage_epochs(cfg: Config, rnd: int) -> int:
    return cfg.train.epochs_first if rnd == 0 else cfg.train.epochs_per_round


def run_isl(cfg: Config, run: RunDir, resume: str | Path | None = None, stop_after: int | None = None) -> dict:
    """Train ISL (or NPID / knn mining) as configured; returns the final metrics."""
    device = select_device(cfg.train.device)
    s = ISLRun(cfg, device)
    if resume is not None:
        s.load_state_dict(load_checkpoint(resume, map_location=device))
        log.info("resumed from %s at %s", resume, s.progress)
    p, m = s.progress, cfg.isl.mining
    rounds = cfg.isl.rounds
    started = time.perf_counter()
    saves = 0

    def checkpoint() -> None:
        nonlocal saves
        p.elapsed = elapsed0 + time.perf_counter() - started
        save_checkpoint(run.checkpoint_path, s.state_dict())
        saves += 1
        if stop_after is not None and saves >= stop_after:
            raise StopRun(f"stopped after {saves} checkpoints")

    elapsed0 = p.elapsed
    last_eval: dict = {}
    while p.stage != Stage.DONE.value:
        if p.stage == Stage.ENCODER.value:
            n_epochs = _stage_epochs(cfg, p.round)
            for _ in tqdm(range(p.epoch, n_epochs), desc=f"round {p.round} encoder", dynamic_ncols=True,
                          initial=p.epoch, total=n_epochs):
                lr = learning_rate(cfg, p.epoch, n_epochs)
                for group in s.optimizer.param_groups:
                    group["lr"] = lr
                stats = train_encoder_epoch(s.model, s.optimizer, s.train_loader(p.global_epoch), s.bank,
                                            s.positives, s.objective, cfg, device,
                                            desc=f"round {p.round} epoch {p.epoch}", batch_views=s.batch_views)
                p.epoch += 1
                p.global_epoch += 1
                record = {"stage": "encoder", "round": p.round, "epoch": p.epoch, "global_epoch": p.global_epoch,
                          "lr": lr, **stats, "pairs": s.positives.num_pairs(),
                          "pair_precision": pair_precision(s.positives, s.labels)}
                if p.epoch % cfg.train.eval_every == 0 or p.epoch == n_epochs:
                    last_eval = evaluate_model(s.model, s.bank_loader, s.query_loader, cfg, device)
                    record.update(last_eval)
                    log.info("round %d epoch %d: l1 %.4f l2 %.4f knn %.4f linear %.4f nmi %.4f acc %.4f ari %.4f",
                             p.round, p.epoch, stats["l1"], stats["l2"],
                             *(last_eval[k] for k in ("knn_acc", "linear_acc", "nmi", "acc", "ari")))
                run.log_metrics(record, step=p.global_epoch, prefix="encoder/")
                checkpoint()
            if p.round < rounds:
                p.round += 1
                p.stage = {"gan": Stage.GAN, "knn": Stage.MINING, "none": Stage.ENCODER}[m.strategy].value
                p.epoch, p.gan_best, p.gan_bad_epochs, p.round_new_pairs = 0, None, 0, 0
            else:
                p.stage = Stage.DONE.value
        elif p.stage == Stage.GAN.value:
            g = cfg.isl.gan
            bar = tqdm(total=g.max_epochs, initial=p.epoch, desc=f"round {p.round} GAN", dynamic_ncols=True)
            while p.epoch < g.max_epochs:
                stats = train_gan_epoch(s.G, s.D, s.opt_g, s.opt_d, s.bank, s.positives, s.gan_train_anchors,
                                        cfg, s.gen)
                stats.update(gan_heldout(s.G, s.D, s.bank, s.positives, s.gan_heldout_anchors, cfg, s.gen))
                p.epoch += 1
                # D's held-out loss: stops improving when the GAN settles (the state lives in Progress)
                stopper = EarlyStopping(g.patience, g.min_delta)
                stopper.load_state_dict({"best": p.gan_best, "bad_steps": p.gan_bad_epochs})
                patience_out = stopper.step(stats["heldout_d_loss"])
                p.gan_best, p.gan_bad_epochs = stopper.best, stopper.bad_steps
                run.log_metrics({"stage": "gan", "round": p.round, "epoch": p.epoch, **stats},
                                step=(p.round - 1) * g.max_epochs + p.epoch, prefix="gan/")
                bar.update(1)
                bar.set_postfix(d=f"{stats['d_loss']:.3f}", g=f"{stats['g_loss']:.3f}")
                stop = p.epoch >= g.min_epochs and patience_out
                if stop:
                    p.epoch = g.max_epochs
                checkpoint()
                if stop:
                    break
            bar.close()
            p.stage, p.epoch = Stage.MINING.value, 0
        elif p.stage == Stage.MINING.value:
            quota = int(m.quota * len(s.train_set))
            gap = float("inf")
            if m.strategy == "gan":
                q = gan_heldout(s.G, s.D, s.bank, s.positives, s.gan_heldout_anchors, cfg, s.gen)
                gap = q["heldout_d_real"] - q["heldout_d_fake_pos"]
                if gap <= cfg.isl.gan.min_d_gap:
                    log.warning("round %d: D does not separate real from fake triplets on held-out anchors "
                                "(gap %.4f <= isl.gan.min_d_gap %.4f); skipping mining this round", p.round, gap,
                                cfg.isl.gan.min_d_gap)
                    p.epoch = m.max_passes
            bar = tqdm(total=quota, initial=p.round_new_pairs, desc=f"round {p.round} mining", dynamic_ncols=True)
            while p.epoch < m.max_passes and p.round_new_pairs < quota:
                t0 = time.perf_counter()
                pi, pj, stats = mining_pass(s.G, s.D, s.bank, s.positives, cfg, s.gen)
                room = quota - p.round_new_pairs
                if pi.numel() > room:  # keep a random subset of this pass's candidates: the quota is a cap
                    keep = torch.randperm(pi.numel(), generator=s.gen, device=pi.device)[:room]
                    pi, pj = pi[keep], pj[keep]
                added = s.positives.add_pairs(pi, pj)
                p.round_new_pairs += added
                p.epoch += 1
                bar.update(added)
                run.log_metrics({"stage": "mining", "round": p.round, "pass": p.epoch, "new_pairs": added,
                                 "pairs": s.positives.num_pairs(), "d_gap": gap,
                                 "pair_precision": pair_precision(s.positives, s.labels),
                                 "sec_per_pass": time.perf_counter() - t0, **stats},
                                step=p.round * m.max_passes + p.epoch, prefix="mining/")
                if added == 0:  # nothing within the radius anywhere: further passes would only repeat this one
                    log.warning("round %d: mining pass %d added no pair; stopping this round's mining", p.round,
                                p.epoch)
                    p.epoch = m.max_passes
                checkpoint()
            bar.close()
            log.info("round %d: %d new pairs (quota %d), %d pairs in all, precision %.3f", p.round,
                     p.round_new_pairs, quota, s.positives.num_pairs(), pair_precision(s.positives, s.labels))
            p.stage, p.epoch = Stage.ENCODER.value, 0
    if not last_eval:
        last_eval = evaluate_model(s.model, s.bank_loader, s.query_loader, cfg, device)
    p.elapsed = elapsed0 + time.perf_counter() - started
    passes = [r["sec_per_pass"] for r in read_metrics(run.path) if r.get("stage") == "mining"]
    results = {**last_eval, "method": {"gan": "isl", "knn": "knn_mining", "none": "npid"}[m.strategy],
               "mining_sec_per_pass": sum(passes) / len(passes) if passes else None,
               "peak_memory_mb": round(peak_memory_mb(), 1), "num_train": len(s.train_set),
               "experiment": cfg.experiment, "dataset": cfg.data.name, "seed": cfg.seed,
               "pairs": s.positives.num_pairs(), "pair_precision": pair_precision(s.positives, s.labels),
               "epochs": p.global_epoch, "wall_time_s": round(p.elapsed, 1), "cluster_on": cfg.eval.cluster_on}
    save_checkpoint(run.checkpoint_path, s.state_dict())
    run.write_results(results)
    run.log_metrics({"stage": "final", **results})
    return results
