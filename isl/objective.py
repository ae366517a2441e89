"""The ISL objective L = L1 + lambda L2 (Wang et al., ICCV 2021, arXiv 2108.02721, section "feature learning").

Notation -> code: p_ik = softmax_k(f_i . v_k / tau) over the whole memory bank -> softmax of `logits` (B x N,
already divided by tau = `temperature`); P_i -> `pos_idx`/`pos_mask` (B x M, from `PositiveSets.padded`);
lambda -> `lam`; p^hard_i = softmax of `hard_logits` (the hard positive's feature against the bank).

    L1_i = -log sum_{k in P_i} p_ik = logsumexp_k logits_ik - logsumexp_{k in P_i} logits_ik
    L2_i = KL(p_i || p^hard_i) = sum_k p_ik (log p_ik - log p^hard_ik)          (p^hard gets no gradient)

The paper writes sums over samples; we return MEANS: L1 over the B anchors, L2 over the anchors whose hard
positive is valid (`hard_valid`; the reference code's "skip singletons" = False for anchors without a mined
positive). The paper's text writes L2 as sum p log(p^hard / p), i.e. -KL: minimising that would push p away
from p^hard, against the stated aim (hard positive enhancement), so we minimise the KL divergence.
With P_i = {i} and lambda = 0, L1 is exactly instance discrimination (NPID): cross_entropy(logits, i).

This module is the plain form, the reference: a dozen lines of log_softmax / logsumexp / KL that read like
the formulas. `isl/objective_fused.py` holds the fused forward/backward that large banks train with
(`isl.compile_objective`), tested equal to it.
The single B x N bank matmul is the caller's (`MemoryBank.logits`) and is shared by L1 and L2; the hard
positives need one more matmul, without gradient. tau has one owner: `ISLLoss.temperature`; the training step
passes it to `MemoryBank.logits` and `hard_positive_logits`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .memory_bank import check_temperature

# the hard positive of an anchor with P_i = {i}: another augmented view (paper) | none, no L2 (reference code)
SINGLETON_HARD_MODES = ("second_view", "skip")
# L2's mean: over the anchors that have a hard positive (ours) | over the whole batch (reference LinearCriterion)
L2_MEANS = ("valid", "batch")
# the hard positive is ranked by its similarity to: f_i, the anchor's feature (ours) | v_i, its bank row (reference)
HARD_POSITIVE_QUERIES = ("feature", "bank_row")


def check_l2_args(lam: float, l2_mean: str) -> tuple[float, str]:
    """lambda >= 0 and an l2_mean in L2_MEANS (every form of the objective checks its arguments here)."""
    if not lam >= 0:
        raise ValueError(f"lambda (lam, the weight of L2) must be >= 0, got {lam}")
    if l2_mean not in L2_MEANS:
        raise ValueError(f"l2_mean must be one of {L2_MEANS}, got {l2_mean!r}")
    return float(lam), l2_mean


class ISLLoss(nn.Module):
    """L1 (positive-set NLL) and L2 (hard positive enhancement) over the memory bank.

    temperature: tau > 0, the one owner of tau: the caller builds `MemoryBank.logits(features,
    loss.temperature)` (the logits given to forward are already divided by it); lam: lambda >= 0, the weight
    of L2 in "loss". l2_mean: "valid" averages L2 over the anchors with a hard positive; "batch" over all B
    anchors, as the reference code's LinearCriterion does (they differ only with singleton_hard: skip).
    """

    def __init__(self, temperature: float = 0.1, lam: float = 0.5, l2_mean: str = "valid") -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.lam, self.l2_mean = check_l2_args(lam, l2_mean)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, lam={self.lam}, l2_mean={self.l2_mean}"

    def forward(self, logits: torch.Tensor, pos_idx: torch.Tensor, pos_mask: torch.Tensor,
                hard_logits: torch.Tensor | None = None, hard_valid: torch.Tensor | None = None,
                check: bool = True) -> dict[str, torch.Tensor]:
        """Return {"l1": mean L1, "l2": mean L2 (see l2_mean), "loss": l1 + lam * l2} (scalars).

        logits: B x N = f . V^T / tau (requires grad); pos_idx, pos_mask: B x M (distinct indices of P_i
        where the mask is True; i itself included); hard_logits: B x N = f^hard . V^T / tau (no gradient
        flows into it) or None (L2 = 0); hard_valid: B bool, which anchors have a hard positive (None = all).
        check: also check the values of pos_idx / pos_mask (a host sync; the training loop checks the first
        step of each epoch only). Shapes are always checked (free).
        """
        if logits.dim() != 2 or not logits.is_floating_point():
            raise ValueError(f"logits must be a float B x N tensor, got {logits.dtype} {tuple(logits.shape)}")
        b, n = logits.shape
        if b == 0:
            raise ValueError("empty batch: logits has no rows")
        if pos_idx.dim() != 2 or pos_idx.shape[0] != b or pos_idx.shape[1] < 1 or pos_mask.shape != pos_idx.shape:
            raise ValueError(f"pos_idx and pos_mask must both be B x M with B = {b}, M >= 1; got "
                             f"{tuple(pos_idx.shape)} and {tuple(pos_mask.shape)} (use PositiveSets.padded)")
        pos_idx = pos_idx.to(logits.device, torch.int64)
        pos_mask = pos_mask.to(logits.device, torch.bool)
        if check and (int(pos_idx.min()) < 0 or int(pos_idx.max()) >= n):
            raise IndexError(f"pos_idx must lie in [0, {n}) (bank rows)")
        if check and not bool(pos_mask.any(dim=1).all()):
            raise ValueError("every row of pos_mask needs at least one True entry (i itself is always in P_i)")
        if hard_logits is not None and hard_logits.shape != logits.shape:
            raise ValueError(f"hard_logits must match logits {tuple(logits.shape)}, got {tuple(hard_logits.shape)}")
        if hard_valid is None:
            hard_valid = torch.ones(b, dtype=torch.bool, device=logits.device)
        elif hard_valid.shape != (b,):
            raise ValueError(f"hard_valid must be a bool vector of length {b}, got {tuple(hard_valid.shape)}")
        return self.terms(logits, pos_idx, pos_mask, hard_logits, hard_valid.to(logits.device, torch.bool))

    def terms(self, logits, pos_idx, pos_mask, hard_logits, hard_valid) -> dict[str, torch.Tensor]:
        """The formulas, on checked inputs."""
        b = logits.shape[0]
        log_p = F.log_softmax(logits.float(), dim=1)                                     # B x N, log p_ik
        log_p_pos = log_p.gather(1, pos_idx).masked_fill(~pos_mask, float("-inf"))      # B x M, log p_ik, k in P_i
        l1 = -torch.logsumexp(log_p_pos, dim=1)                                          # B, -log sum_{P_i} p_ik
        # the mean in nll_loss's summation order, so that P_i = {i} with lam = 0 is F.cross_entropy(logits, i)
        # bit for bit (NPID); mathematically it is l1.mean()
        l1 = F.nll_loss(-l1[:, None], torch.zeros(b, dtype=torch.int64, device=l1.device))
        if hard_logits is None:
            l2 = log_p.new_zeros(())
        else:
            log_q = F.log_softmax(hard_logits.detach().float(), dim=1)                   # B x N, log p^hard_ik
            kl = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(1)        # B, KL(p_i || p^hard_i)
            n_l2 = b if self.l2_mean == "batch" else hard_valid.sum().clamp(min=1)       # L2's denominator
            l2 = (kl * hard_valid).sum() / n_l2
        return {"l1": l1, "l2": l2, "loss": l1 + self.lam * l2}


@torch.no_grad()
def hard_positive_logits(features: torch.Tensor, anchors: torch.Tensor, bank, positives, temperature: float,
                         mode: str = "least_similar", second_view: torch.Tensor | None = None,
                         similarities: torch.Tensor | None = None, chunk_size: int | None = None,
                         query: str = "feature", dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`hard_positive_features` against the bank: (hard_logits B x N, hard_valid B bool), no gradient.

    dtype: the precision of the product (None: the features'). torch.bfloat16 multiplies bf16 inputs with float32
    accumulation into bf16 logits, 2-4x faster where bf16 is native (isl/hardware.py); the logits are then within
    2^-8 of their float32 values relative to their size, and L2, which reads them as float32, within 1e-3
    (tests/test_objective.py states the measured tolerance). Used for L2's target only, never for logits that
    carry a gradient."""
    hard, valid = hard_positive_features(features, anchors, bank, positives, mode, second_view, similarities, query)
    if dtype is not None:
        hard = hard.to(dtype)
    return bank.logits(hard, temperature, chunk_size=chunk_size), valid           # B x N, B


@torch.no_grad()
def hard_positive_features(features: torch.Tensor, anchors: torch.Tensor, bank, positives,
                           mode: str = "least_similar", second_view: torch.Tensor | None = None,
                           similarities: torch.Tensor | None = None,
                           query: str = "feature") -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of L2 for a batch: -> (hard features B x d, hard_valid B bool), no gradient.

    features: B x d encoder features f_i; bank: a MemoryBank; positives: a PositiveSets; mode: least_similar
    (paper) | most_similar (reference code). The hard feature is the bank row of the chosen mined positive;
    for anchors with P_i = {i} it is `second_view` (B x d, features of another augmentation of image i), or,
    when second_view is None, those anchors are marked invalid (the reference code's skip). similarities:
    optional B x N (e.g. the step's logits) to pick the hard positive without another matmul. query: rank the
    mined positives by f_i . v_j ("feature") or by v_i . v_j ("bank_row", the anchor's own bank row, as the
    reference code does; `similarities` is then unused).
    """
    if query not in HARD_POSITIVE_QUERIES:
        raise ValueError(f"query must be one of {HARD_POSITIVE_QUERIES}, got {query!r}")
    if query == "bank_row":
        ranked_by, similarities = bank.bank[anchors].to(features.dtype), None              # B x d, v_i
    else:
        ranked_by = features                                                               # B x d, f_i
    idx, has_mined = positives.hard_positive(ranked_by, anchors, bank, mode, similarities=similarities)
    hard = bank.bank[idx].to(features.dtype)                                      # B x d
    if second_view is not None:
        hard = torch.where(has_mined[:, None], hard, second_view.detach().to(features.dtype))
        valid = torch.ones_like(has_mined)
    else:
        valid = has_mined
    return hard, valid                                                            # B x d, B
