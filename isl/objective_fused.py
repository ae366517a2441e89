"""The fused forward/backward of the ISL objective (opt-in: `isl.fused_objective: true`).

Same values and gradients as `isl.objective.ISLLoss` (tested equal in tests/test_objective.py), computed
in one pass over blocks of rows that stay in cache: both terms and the gradient of "loss" w.r.t. the logits
(an autograd Function whose backward only hands that gradient on). Backpropagate "loss"; "l1" and "l2" are
differentiable too, but their gradients are recomputed in backward.

    dL1_i/ds_ik = p_ik - [k in P_i] w_ik,  w_ik = p_ik / sum_{P_i} p ;   dL2_i/ds_ik = p_ik (log p_ik - log p^hard_ik - KL_i)
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .objective import ISLLoss


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


class FusedISLLoss(ISLLoss):
    """`ISLLoss` with the hand-derived fused pass. block_rows: rows per block (a speed knob, no effect on
    values; smaller blocks stay in cache, larger ones launch fewer parallel regions)."""

    def __init__(self, temperature: float = 0.1, lam: float = 0.5, l2_mean: str = "valid",
                 block_rows: int = 64) -> None:
        super().__init__(temperature, lam, l2_mean)
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        self.block_rows = int(block_rows)

    def terms(self, logits, pos_idx, pos_mask, hard_logits, hard_valid):
        want_grad = logits.requires_grad and torch.is_grad_enabled()
        l1, l2, loss = _ISLTerms.apply(logits, hard_logits, pos_idx, pos_mask, hard_valid, self.lam,
                                       self.block_rows, want_grad, self.l2_mean == "batch")
        return {"l1": l1, "l2": l2, "loss": loss}
