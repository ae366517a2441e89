"""One epoch of each ISL stage (Wang et al., ICCV 2021): an encoder epoch, a GAN epoch, D's held-out scores.

Each function receives its objects as arguments and returns plain metrics; the stage functions in
`isl/train.py` call them (mining passes come from the strategy's miner, `isl/strategies.py`).
Notation: f -> `features` (encoder output, unit norm), V -> `bank.bank`, P_i -> `positives`,
tau -> `objective.temperature` (its one owner), lambda -> `lam`, r -> `radius`, h -> `threshold`.
"""
from __future__ import annotations

import math
import time

import torch
from .progress import tqdm

from .amp import Precision, autocast, to_memory_format
from .config import Config
from .gan import Discriminator, discriminator_loss, gan_quality, gan_step
from .memory_bank import MemoryBank
from .objective import ISLLoss, hard_positive_features, hard_positive_logits
from .objective_chunked import ChunkedISLLoss
from .positives import PositiveSets
from .training import NonFiniteLossError
from .triplets import anchor_features, build_triplets


# under bf16 autocast, L2's target logits (no gradient) are computed from bf16 inputs too (isl.objective)
TARGET_DTYPES = {"bf16": torch.bfloat16}


def needs_second_view(cfg: Config, objective: ISLLoss) -> bool:
    """Whether the encoder step uses a second augmented view: only as the hard positive of anchors whose
    P_i = {i} (L2 with `singleton_hard: second_view`). NPID, lambda = 0 and `skip` train on one view."""
    return objective.lam > 0 and cfg.isl.singleton_hard == "second_view"


def train_encoder_epoch(model, optimizer, loader, bank: MemoryBank, positives: PositiveSets, objective: ISLLoss,
                        cfg: Config, device: torch.device, desc: str = "encoder",
                        batch_views=None, scaler: torch.amp.GradScaler | None = None,
                        gather=None, precision: Precision = Precision()) -> dict[str, float]:
    """One epoch of L = L1 + lambda L2 over the memory bank, then the bank update after each step.

    Only the encoder runs under `precision.amp` (train.amp resolved, isl.amp.resolve_precision); its features are cast to float32 before they meet the bank, so the
    logits, the objective and the bank stay float32. `scaler`: the fp16 GradScaler (None or disabled: plain
    backward and step). `gather(indices, features)`: under torchrun, every rank's (index, feature) pairs of
    this step (`isl.distributed.all_gather_batch`), so the bank update is the same on every rank.

    `batch_views`, when given, turns a batch of raw images B x C x H x W into augmented views
    B x V x C x H x W (batched augmentation); otherwise the loader already yields them. View 1 is trained;
    view 2 (present when `needs_second_view`) is encoded without autograd, in train mode like view 1, so
    BatchNorm normalises each view with its own batch statistics (as MoCo's key encoder does) and its
    running statistics see both views, as when the two views went through one forward pass.
    """
    isl = cfg.isl
    second_view = needs_second_view(cfg, objective)
    model.train()
    sums = torch.zeros(3, dtype=torch.float64)  # l1, l2, loss
    steps = images_seen = 0
    start = time.perf_counter()
    for images, _, indices in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, mininterval=2):
        images, indices = images.to(device, non_blocking=True), indices.to(device)
        if batch_views is not None:
            images = batch_views(images)
        channels_last = precision.channels_last
        with autocast(device, precision.amp):                            # images: B x V x C x H x W
            f1 = model(to_memory_format(images[:, 0], channels_last)).float()  # B x d, view 1 trains
            f2 = None
            if second_view:  # view 2 is only a target: no autograd graph, no backward through it
                with torch.no_grad():
                    f2 = model(to_memory_format(images[:, 1], channels_last)).float()  # B x d
        pos_idx, pos_mask = positives.padded(indices)                   # B x M, i in column 0
        if isinstance(objective, ChunkedISLLoss):  # isl.bank_chunk > 0: no B x N tensor (objective_chunked.py)
            hard, hard_valid = None, None
            if objective.lam > 0:
                hard, hard_valid = hard_positive_features(f1.detach(), indices, bank, positives, isl.hard_positive,
                                                          second_view=f2, query=isl.hard_positive_query)
            terms = objective(f1, bank.bank, pos_idx, pos_mask, hard, hard_valid)
        else:
            terms = _bank_objective(objective, f1, f2, indices, bank, positives, pos_idx, pos_mask, isl,
                                    check=steps == 0, target_dtype=TARGET_DTYPES.get(precision.amp))
        loss = terms["loss"]                                            # l1 + lam * l2
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite loss {loss.item()} (l1={terms['l1'].item()}, "
                                     f"l2={terms['l2'].item()}) at step {steps} of {desc}; lower optim.lr or "
                                     f"check the data")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()  # fp16: the loss scaled up so small gradients survive; steps with
            scaler.step(optimizer)         # inf / NaN gradients are skipped and the scale is lowered
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        all_idx, all_f = (indices, f1.detach()) if gather is None else gather(indices, f1.detach())  # global batch
        bank.update(all_idx, all_f)                                     # v_i <- norm(eta f_i + (1-eta) v_i)
        sums += torch.stack([terms["l1"].detach(), terms["l2"].detach(), loss.detach()]).double().cpu()
        steps, images_seen = steps + 1, images_seen + len(indices)
        if cfg.train.max_steps_per_epoch and steps >= cfg.train.max_steps_per_epoch:
            break
    l1, l2, total = (sums / max(steps, 1)).tolist()
    seconds = time.perf_counter() - start
    return {"l1": l1, "l2": l2, "loss": total, "steps": steps, "sec_per_epoch": seconds,
            "images_per_s": images_seen / seconds}


def _bank_objective(objective, f1, f2, indices, bank: MemoryBank, positives: PositiveSets, pos_idx, pos_mask, isl,
                    check: bool, target_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """L1 + lambda L2 from the B x N logits f . V^T / tau (the plain and the fused objective). target_dtype: the
    precision of the hard positive's logits (L2's target, no gradient; None = float32)."""
    logits = bank.logits(f1, objective.temperature)                                # B x N
    # hard positive: a mined member of P_i (its bank row), else the second augmented view of image i;
    # picked from this step's logits (same order as f . V), so no extra B x N matmul for the choice
    hard_logits, hard_valid = None, None
    if objective.lam > 0:
        hard_logits, hard_valid = hard_positive_logits(
            f1.detach(), indices, bank, positives, objective.temperature, isl.hard_positive,
            second_view=f2, similarities=logits.detach(), query=isl.hard_positive_query, dtype=target_dtype)
    # value checks of pos_idx / pos_mask need a host sync: the first step of each epoch only
    return objective(logits, pos_idx, pos_mask, hard_logits, hard_valid, check=check)


def num_negative_candidates(cfg: Config, num_samples: int) -> int:
    """K of the hardest-of-K negative: isl.gan.num_candidates, capped at isl.gan.negative_pool x N."""
    gan = cfg.isl.gan
    return max(1, min(gan.num_candidates, int(gan.negative_pool * num_samples)))


def gan_triplets(anchors: torch.Tensor, bank: MemoryBank, positives: PositiveSets, views: torch.Tensor | None,
                 cfg: Config, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real triplets (a, p, n) of `anchors` as configured (isl.gan.anchor / positive_source / negative_pool).

    views: N x d encoder features of one augmented view of every sample (None when the config needs none).
    """
    gan, rows = cfg.isl.gan, bank.bank
    a, alt = anchor_features(anchors, rows, None if views is None else views[anchors], gan.anchor)
    return build_triplets(a, anchors, rows, positives, num_negative_candidates(cfg, len(rows)), generator,
                          positive_source=gan.positive_source, alt_features=alt)


def train_gan_epoch(G, D, opt_g, opt_d, bank: MemoryBank, positives: PositiveSets, train_anchors: torch.Tensor,
                    cfg: Config, generator: torch.Generator, views: torch.Tensor | None = None) -> dict[str, float]:
    """One pass of GAN training over `train_anchors` on frozen bank (and view) features."""
    gan = cfg.isl.gan
    G.train(), D.train()
    order = train_anchors[torch.randperm(len(train_anchors), generator=generator, device=train_anchors.device)]
    sums, steps = {}, 0
    for start in range(0, len(order), gan.batch_size):
        anchors = order[start:start + gan.batch_size]
        a, p, n = gan_triplets(anchors, bank, positives, views, cfg, generator)
        out = gan_step(G, D, opt_g, opt_d, a, p, n, gan.alpha, generator, d_steps=gan.d_steps,
                       weights=gan.loss_weights)
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + torch.as_tensor(value).detach().double().cpu()
        steps += 1
    out = {k: float(v / max(steps, 1)) for k, v in sums.items()}
    if not all(math.isfinite(v) for v in out.values()) or not all(
            bool(torch.isfinite(t).all()) for net in (G, D) for t in net.state_dict().values()):
        raise NonFiniteLossError(f"the GAN diverged (non-finite losses or weights: {out}); lower isl.gan.lr / "
                                 f"isl.gan.d_lr or isl.gan.alpha")
    return out


@torch.no_grad()
def gan_heldout(G, D, bank: MemoryBank, positives: PositiveSets, anchors: torch.Tensor, cfg: Config,
                generator: torch.Generator, views: torch.Tensor | None = None) -> dict[str, float]:
    """D's scores and AUCs on real and fake triplets of anchors the GAN never trained on."""
    gan = cfg.isl.gan
    a, p, n = gan_triplets(anchors, bank, positives, views, cfg, generator)
    out = gan_quality(G, D, a, p, n, alpha=gan.alpha, generator=generator, weights=gan.loss_weights)
    return {f"heldout_{k}": float(v) for k, v in out.items()}


def fresh_discriminator_auc(G, bank: MemoryBank, positives: PositiveSets, train_anchors: torch.Tensor,
                            heldout_anchors: torch.Tensor, cfg: Config, generator: torch.Generator,
                            views: torch.Tensor | None = None) -> dict[str, float]:
    """A diagnostic: train a NEW D for isl.gan.diag_steps steps against the frozen G, then its held-out AUCs.

    If a fresh D separates real from fake triplets (AUC near 1) while the co-trained D does not (near 0.5), the
    co-trained D is uninformed, not at an equilibrium where G's proxies are indistinguishable from positives.
    The new D's initial weights come from the global generator: call this inside `torch.random.fork_rng`.
    """
    gan = cfg.isl.gan
    D = Discriminator(bank.bank.shape[1]).to(bank.bank.device)
    opt = torch.optim.Adam(D.parameters(), lr=gan.d_lr or gan.lr, betas=(gan.beta1, gan.beta2))
    G.eval()
    for _ in range(gan.diag_steps):
        pick = torch.randint(len(train_anchors), (gan.batch_size,), generator=generator, device=train_anchors.device)
        a, p, n = gan_triplets(train_anchors[pick], bank, positives, views, cfg, generator)
        with torch.no_grad():
            g = G(a, p, n, generator=generator)
        loss = discriminator_loss(D(a, p, n), D(a, g, n), D(a, p, g), gan.alpha, gan.loss_weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = gan_quality(G, D, *gan_triplets(heldout_anchors, bank, positives, views, cfg, generator),
                        alpha=gan.alpha, generator=generator, weights=gan.loss_weights)
    return {"fresh_d_auc": q["auc"], "fresh_d_auc_pos": q["auc_pos"], "fresh_d_auc_neg": q["auc_neg"]}


def pair_precision(positives: PositiveSets, labels: torch.Tensor) -> float:
    """Fraction of mined pairs whose ground-truth labels agree (monitoring only; NaN without pairs)."""
    value = positives.pair_precision(labels)
    return float("nan") if value is None else float(value)

