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

Speed: on CPU the step is dominated by passes over B x N tensors, so both terms and the gradient of
"loss" w.r.t. the logits are computed in one pass over blocks of rows that stay in cache (an autograd Function
whose backward only hands that gradient on). Backpropagate "loss"; "l1" and "l2" are differentiable too, but
their gradients are recomputed in backward. The single B x N bank matmul is the caller's (`MemoryBank.logits`)
and is shared by L1 and L2; the hard positives need one more matmul, without gradient.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .memory_bank import check_temperature

# the hard positive of an anchor with P_i = {i}: another augmented view (paper) | none, no L2 (reference code)
SINGLETON_HARD_MODES = ("second_view", "skip")
# L2's mean: over the anchors that have a hard positive (ours) | over the whole batch (reference LinearCriterion)
L2_MEANS = ("valid", "batch")
# the hard positive is ranked by its similarity to: f_i, the anchor's feature (ours) | v_i, its bank row (reference)
HARD_POSITIVE_QUERIES = ("feature", "bank_row")


def _terms(s: torch.Tensor, t: torch.Tensor | None, pos_idx: torch.Tensor, pos_mask: torch.Tensor,
           valid: torch.Tensor, w1: float | torch.Tensor, w2: float | torch.Tensor, block_rows: int,
           want_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-anchor L1_i, L2_i (B each) and, if want_grad, w1 dL1_i/ds + w2 [valid_i] dL2_i/ds summed (B x N).

    s, t: B x N float32 logits (t = hard logits or None). Processed over blocks of rows so each B x N pass runs
    in cache:  dL1_i/ds_ik = p_ik - [k in P_i] w_ik  with w_ik = p_ik / sum_{P_i} p ;
               dL2_i/ds_ik = p_ik (log p_ik - log p^hard_ik - KL_i).
    """
    b = s.shape[0]
    l1 = s.new_empty(b)                                                    # B
    l2 = s.new_zeros(b)                                                    # B
    grad = torch.empty_like(s) if want_grad else None                      # B x N
    for r in range(0, b, block_rows):  # blocks of rows, not single samples
        e = min(r + block_rows, b)
        ls = torch.log_softmax(s[r:e], dim=1)                              # rows x N, log p
        lp = ls.gather(1, pos_idx[r:e]).masked_fill_(~pos_mask[r:e], float("-inf"))  # rows x M
        lse_pos = torch.logsumexp(lp, dim=1, keepdim=True)                 # rows x 1, log sum_{P_i} p
        l1[r:e] = -lse_pos.squeeze(1)
        if t is None and not want_grad:
            continue
        p = ls.exp()                                                       # rows x N
        if t is not None:
            d = ls.sub_(torch.log_softmax(t[r:e], dim=1))                  # rows x N, log p - log p^hard
            kl = torch.bmm(p[:, None, :], d[:, :, None]).view(-1, 1)       # rows x 1
            keep = valid[r:e, None].to(s.dtype)                            # rows x 1
            l2[r:e] = (kl * keep).squeeze(1)
        if want_grad:
            g = grad[r:e]                                                  # rows x N (a view)
            if t is not None:  # p (w1 + c (d - KL)) = p (bias + c d), c = w2 keep
                c = keep * w2                                              # rows x 1
                torch.addcmul(w1 - c * kl, d, c, out=g).mul_(p)
            else:
                torch.mul(p, w1, out=g)
            g.scatter_add_(1, pos_idx[r:e], (lp - lse_pos).exp_().mul_(-w1))  # - w1 w_ik on P_i
    return l1, l2, grad


class _ISLTerms(torch.autograd.Function):
    """(logits, hard_logits | None, pos_idx, pos_mask, valid, lam) -> (L1 mean, L2 mean, L1 + lam L2).

    The gradient of the third output is computed in forward, in the same in-cache pass as the values, so the
    usual `terms["loss"].backward()` costs no further B x N pass. Gradients through the first two outputs are
    supported too (recomputed in backward, slower).
    """

    @staticmethod
    def forward(ctx, logits, hard_logits, pos_idx, pos_mask, valid, lam, block_rows, want_grad, l2_over_batch):
        b = logits.shape[0]
        s = logits.detach().float()
        t = None if hard_logits is None else hard_logits.detach().float()
        # L2's denominator ("n_valid"): the anchors with a hard positive, or the batch size (reference code)
        n_valid = s.new_tensor(float(b)) if l2_over_batch else valid.sum().clamp(min=1).to(s.dtype)
        l1, l2, grad = _terms(s, t, pos_idx, pos_mask, valid, 1.0 / b, lam / n_valid, block_rows, want_grad)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(s, t, pos_idx, pos_mask, valid, n_valid)
        ctx.grad, ctx.lam, ctx.block_rows, ctx.in_dtype = grad, lam, block_rows, logits.dtype
        # the mean is taken in nll_loss's summation order, so that P_i = {i} with lam = 0 reproduces
        # F.cross_entropy(logits, i) bit for bit (NPID); mathematically it is l1.mean()
        l1 = torch.nn.functional.nll_loss(-l1[:, None], torch.zeros(b, dtype=torch.int64, device=l1.device))
        l2 = l2.sum() / n_valid
        return l1, l2, l1 + lam * l2

    @staticmethod
    @once_differentiable
    def backward(ctx, g1, g2, g_loss):
        s, t, pos_idx, pos_mask, valid, n_valid = ctx.saved_tensors
        grad, zero = None, s.new_zeros(())
        if g_loss is not None and ctx.grad is not None:  # the fast path: the gradient from forward, used once
            grad, ctx.grad = ctx.grad, None
            if not (g_loss.numel() == 1 and bool(g_loss == 1)):
                grad.mul_(g_loss)
            g_loss = None
        # the slow path (separate terms, or a second backward with retain_graph): recompute over the rows
        w1 = (zero if g1 is None else g1) + (zero if g_loss is None else g_loss)
        w2 = (zero if g2 is None else g2) + (zero if g_loss is None else g_loss * ctx.lam)
        if g1 is not None or g2 is not None or g_loss is not None:
            extra = _terms(s, t, pos_idx, pos_mask, valid, w1 / s.shape[0], w2 / n_valid, ctx.block_rows)[2]
            grad = extra if grad is None else grad.add_(extra)
        return None if grad is None else grad.to(ctx.in_dtype), None, None, None, None, None, None, None, None


class ISLLoss(nn.Module):
    """L1 (positive-set NLL) and L2 (hard positive enhancement) over the memory bank.

    temperature: tau > 0, recorded for the caller's `MemoryBank.logits(features, loss.temperature)` (the
    logits given to forward must already be divided by it); lam: lambda >= 0, the weight of L2 in "loss".
    l2_mean: "valid" averages L2 over the anchors with a hard positive; "batch" over all B anchors, as the
    reference code's LinearCriterion does (the two differ only when some anchors have none: singleton_hard skip).
    block_rows: rows per block of the fused pass (a speed knob, no effect on values; smaller blocks stay in
    cache, larger ones launch fewer parallel regions, which matters when other processes share the cores).
    """

    def __init__(self, temperature: float = 0.1, lam: float = 0.5, block_rows: int = 64,
                 l2_mean: str = "valid") -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        if not lam >= 0:
            raise ValueError(f"lambda (lam, the weight of L2) must be >= 0, got {lam}")
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        if l2_mean not in L2_MEANS:
            raise ValueError(f"l2_mean must be one of {L2_MEANS}, got {l2_mean!r}")
        self.lam, self.block_rows, self.l2_mean = float(lam), int(block_rows), l2_mean

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, lam={self.lam}"

    def forward(self, logits: torch.Tensor, pos_idx: torch.Tensor, pos_mask: torch.Tensor,
                hard_logits: torch.Tensor | None = None,
                hard_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Return {"l1": mean L1, "l2": mean L2 (see l2_mean), "loss": l1 + lam * l2} (scalars).

        logits: B x N = f . V^T / tau (requires grad); pos_idx, pos_mask: B x M (distinct indices of P_i
        where the mask is True; i itself included); hard_logits: B x N = f^hard . V^T / tau (no gradient
        flows into it) or None (L2 = 0); hard_valid: B bool, which anchors have a hard positive (None = all).
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
        if int(pos_idx.min()) < 0 or int(pos_idx.max()) >= n:
            raise IndexError(f"pos_idx must lie in [0, {n}) (bank rows)")
        if not bool(pos_mask.any(dim=1).all()):
            raise ValueError("every row of pos_mask needs at least one True entry (i itself is always in P_i)")
        if hard_logits is not None and hard_logits.shape != logits.shape:
            raise ValueError(f"hard_logits must match logits {tuple(logits.shape)}, got {tuple(hard_logits.shape)}")
        if hard_valid is None:
            hard_valid = torch.ones(b, dtype=torch.bool, device=logits.device)
        elif hard_valid.shape != (b,):
            raise ValueError(f"hard_valid must be a bool vector of length {b}, got {tuple(hard_valid.shape)}")
        hard_valid = hard_valid.to(logits.device, torch.bool)
        want_grad = logits.requires_grad and torch.is_grad_enabled()
        l1, l2, loss = _ISLTerms.apply(logits, hard_logits, pos_idx, pos_mask, hard_valid, self.lam,
                                       self.block_rows, want_grad, self.l2_mean == "batch")
        return {"l1": l1, "l2": l2, "loss": loss}


@torch.no_grad()
def hard_positive_logits(features: torch.Tensor, anchors: torch.Tensor, bank, positives, temperature: float,
                         mode: str = "least_similar", second_view: torch.Tensor | None = None,
                         similarities: torch.Tensor | None = None, chunk_size: int | None = None,
                         query: str = "feature") -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of L2 for a batch: -> (hard_logits B x N, hard_valid B bool), no gradient.

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
    return bank.logits(hard, temperature, chunk_size=chunk_size), valid           # B x N, B
