"""The fused forward/backward of the ISL objective (`isl.compile_objective`, on by default for large banks, or
`isl.fused_objective: true` in eager mode).

Same values and gradients as `isl.objective.ISLLoss`, the plain form (tested equal in tests/test_objective.py),
computed from row scalars so that the B x N work is a few elementwise passes, the gradient of "loss" w.r.t.
the logits s included (an autograd Function whose backward only hands that gradient on):

    lse_i = logsumexp_k s_ik,  log p_ik = s_ik - lse_i,  d_ik = log p_ik - log p^hard_ik,  KL_i = sum_k p_ik d_ik
    L1_i  = lse_i - logsumexp_{k in P_i} s_ik
    dL/ds_ik = w1 (p_ik - [k in P_i] p_ik / sum_{P_i} p) + c_i p_ik (d_ik - KL_i)
    (w1 = 1/B, the mean of L1; c_i = lambda [hard positive valid] / n_valid, the mean of L2)

The B x N part (`bank_terms`) has no per-anchor set in it; the P_i part (a B x M gather and scatter) is done
apart. With `compile=True` the B x N part goes through torch.compile, which fuses it into one or two passes
over s and t (a C++ compiler on CPU, Triton on CUDA): measured on 2 CPU cores at N = 50,000, B = 256 it costs
about what NPID's cross entropy does, and the whole objective step 1.4x less than the plain form's (eager, the
fused form is no faster than the plain one: tools/bench/isl_step.py). Where compiling fails (no compiler), the
same function runs eagerly, after one warning. The hard logits t may come in bfloat16 (L2's target: no gradient
flows into it; `hard_positive_logits(dtype=...)`): they are read as float32 inside the pass.
"""
from __future__ import annotations

import logging

import torch
from torch.autograd.function import once_differentiable

from .objective import ISLLoss

log = logging.getLogger("isl")


def bank_terms(s: torch.Tensor, t: torch.Tensor, w1: torch.Tensor,
               c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The B x N part: (lse B x 1, KL B x 1, w1 p + c p (d - KL) B x N). s: B x N float32; t: B x N."""
    lse = torch.logsumexp(s, dim=1, keepdim=True)                         # B x 1
    log_p = s - lse                                                        # B x N
    p = log_p.exp()                                                        # B x N
    t = t.float()
    d = log_p - (t - torch.logsumexp(t, dim=1, keepdim=True))              # B x N, log p - log p^hard
    kl = (p * d).sum(dim=1, keepdim=True)                                  # B x 1
    return lse, kl, p * (w1 + c * (d - kl))


class _Compiled:
    """`bank_terms` through torch.compile, built on first use; eager for good after a failed compile."""

    def __init__(self) -> None:
        self.fn = None
        self.failed = False

    def __call__(self, *args):
        if self.failed:
            return bank_terms(*args)
        if self.fn is None:
            self.fn = torch.compile(bank_terms, dynamic=False)
        try:
            return self.fn(*args)
        except Exception as err:  # noqa: BLE001 (no compiler, an unsupported backend: any of them means eager)
            self.failed = True
            log.warning("torch.compile of the fused objective failed (%s: %s); running it eagerly (same values, "
                        "slower). Set isl.compile_objective=off to skip the attempt", type(err).__name__,
                        str(err).splitlines()[0] if str(err) else "")
            return bank_terms(*args)


COMPILED_BANK_TERMS = _Compiled()
COMPILE_MIN_ELEMENTS = 2**22  # B x N from which `auto` compiles: ~4M logits, where the ~20 s compile pays back


def use_compile(mode: str, lam: float, batch_logits: int, device: torch.device) -> bool:
    """isl.compile_objective (auto | on | off) decided: auto = on for L2 (lambda > 0) over at least
    COMPILE_MIN_ELEMENTS logits per step on a CPU or CUDA device."""
    if mode != "auto":
        return mode == "on"
    return lam > 0 and batch_logits >= COMPILE_MIN_ELEMENTS and device.type in ("cpu", "cuda")


def _fused(s, t, pos_idx, pos_mask, valid, w1, c, compile: bool):
    """Per-anchor L1_i, KL_i (B each) and the gradient of w1 sum L1_i + sum c_i KL_i w.r.t. s (B x N)."""
    lse, kl, grad = (COMPILED_BANK_TERMS if compile else bank_terms)(s, t, w1, c)
    s_pos = s.gather(1, pos_idx).masked_fill(~pos_mask, float("-inf"))    # B x M, s_ik for k in P_i
    lse_pos = torch.logsumexp(s_pos, dim=1, keepdim=True)                  # B x 1
    grad.scatter_add_(1, pos_idx, (s_pos - lse_pos).exp().mul_(-w1))       # - w1 p_ik / sum_{P_i} p
    return (lse - lse_pos).squeeze(1), kl.squeeze(1), grad


class _ISLTerms(torch.autograd.Function):
    """(logits, hard_logits, pos_idx, pos_mask, valid, lam) -> (L1 mean, L2 mean, L1 + lam L2).

    The gradient of the third output is computed in forward, in the same pass as the values, so the usual
    `terms["loss"].backward()` costs no further B x N pass. Gradients through the first two outputs are
    supported too (recomputed in backward, slower).
    """

    @staticmethod
    def forward(ctx, logits, hard_logits, pos_idx, pos_mask, valid, lam, want_grad, l2_over_batch, compile):
        b = logits.shape[0]
        s, t = logits.detach().float(), hard_logits.detach()
        # L2's denominator ("n_valid"): the anchors with a hard positive, or the batch size (reference code)
        n_valid = s.new_tensor(float(b)) if l2_over_batch else valid.sum().clamp(min=1).to(s.dtype)
        keep = valid.to(s.dtype)[:, None]                                  # B x 1
        w1, c = s.new_tensor(1.0 / b), keep * (lam / n_valid)
        l1, kl, grad = _fused(s, t, pos_idx, pos_mask, valid, w1, c, compile)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(s, t, pos_idx, pos_mask, valid, keep, n_valid)
        ctx.grad, ctx.lam, ctx.compile, ctx.in_dtype = (grad if want_grad else None), lam, compile, logits.dtype
        # the mean is taken in nll_loss's summation order, so that P_i = {i} with lam = 0 reproduces
        # F.cross_entropy(logits, i) bit for bit (NPID); mathematically it is l1.mean()
        l1 = torch.nn.functional.nll_loss(-l1[:, None], torch.zeros(b, dtype=torch.int64, device=l1.device))
        l2 = (kl * keep.squeeze(1)).sum() / n_valid
        return l1, l2, l1 + lam * l2

    @staticmethod
    @once_differentiable
    def backward(ctx, g1, g2, g_loss):
        s, t, pos_idx, pos_mask, valid, keep, n_valid = ctx.saved_tensors
        grad = None
        if g_loss is not None and ctx.grad is not None:  # the fast path: the gradient from forward, used once
            grad, ctx.grad = ctx.grad, None
            if not (g_loss.numel() == 1 and bool(g_loss == 1)):
                grad.mul_(g_loss)
            g_loss = None
        # the slow path (separate terms, or a second backward with retain_graph): recompute with their weights
        zero = s.new_zeros(())
        w1 = (zero if g1 is None else g1) + (zero if g_loss is None else g_loss)
        w2 = (zero if g2 is None else g2) + (zero if g_loss is None else g_loss * ctx.lam)
        if g1 is not None or g2 is not None or g_loss is not None:
            extra = _fused(s, t, pos_idx, pos_mask, valid, w1 / s.shape[0], keep * (w2 / n_valid), ctx.compile)[2]
            grad = extra if grad is None else grad.add_(extra)
        return None if grad is None else grad.to(ctx.in_dtype), None, None, None, None, None, None, None, None


class FusedISLLoss(ISLLoss):
    """`ISLLoss` with the fused pass (module docstring). compile: run its B x N part through torch.compile."""

    def __init__(self, temperature: float = 0.1, lam: float = 0.5, l2_mean: str = "valid",
                 compile: bool = False) -> None:
        super().__init__(temperature, lam, l2_mean)
        self.compiled = bool(compile)  # not `compile`: that would hide nn.Module.compile

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, compiled={self.compiled}"

    def terms(self, logits, pos_idx, pos_mask, hard_logits, hard_valid):
        if hard_logits is None:  # no L2 (NPID, lambda = 0): the plain form, F.cross_entropy bit for bit
            return super().terms(logits, pos_idx, pos_mask, hard_logits, hard_valid)
        want_grad = logits.requires_grad and torch.is_grad_enabled()
        l1, l2, loss = _ISLTerms.apply(logits, hard_logits, pos_idx, pos_mask, hard_valid, self.lam, want_grad,
                                       self.l2_mean == "batch", self.compiled)
        return {"l1": l1, "l2": l2, "loss": loss}
