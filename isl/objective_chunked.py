"""The ISL objective over bank chunks: no B x N tensor, ever (`isl.bank_chunk > 0`; ImageNet-sized banks).

Same L1, L2 and gradient as `isl.objective.ISLLoss` (tested equal in tests/test_objective_chunked.py), from the
features instead of the logits: z_ik = f_i . v_k / tau and h_ik = f^hard_i . v_k / tau are recomputed per chunk
of C bank rows, so memory holds B x C at a time (the plain form holds several B x N tensors: 4.4 GB for B = 128
at N = 1.28M, docs/scale.md). Three passes over the bank, each one B x C matmul per chunk (two with L2):

    pass 1 (forward):   lse_i = logsumexp_k z_ik, lse^hard_i = logsumexp_k h_ik     (online over chunks)
    pass 2 (forward):   S_i = sum_k p_ik (z_ik - h_ik),   KL_i = S_i - lse_i + lse^hard_i = KL(p_i || p^hard_i)
    L1_i = lse_i - logsumexp_{k in P_i} z_ik               (P_i gathered: B x M rows of V)
    pass 3 (backward):  dL/df_i = 1/tau sum_k g_ik v_k,  g_ik = w1 (p_ik - [k in P_i] r_ik) + w2_i p_ik (z_ik - h_ik - S_i)

with r_ik = p_ik / sum_{P_i} p (the softmax within P_i), w1 = dL/dl1 / B, w2_i = dL/dl2 [valid_i] / n_L2. The
price is compute: about 2-3x the matmuls of the plain form, which materialises z once and lets autograd reuse it.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .memory_bank import check_temperature
from .objective import check_l2_args


class _ChunkedTerms(torch.autograd.Function):
    """(f, V, f^hard, P_i, l2 weights) -> [mean L1, weighted sum of L2_i]; gradient w.r.t. f only."""

    @staticmethod
    def forward(ctx, f, bank, hard, pos_idx, pos_mask, l2_weights, temperature: float, chunk: int):
        fs = f / temperature                                                     # B x d
        hs = None if hard is None else hard / temperature                        # B x d
        b, n = f.shape[0], bank.shape[0]
        lse = f.new_full((b,), float("-inf"))                                    # B
        lse_h = f.new_full((b,), float("-inf"))                                  # B
        for s in range(0, n, chunk):
            v = bank[s:s + chunk]                                                # C x d
            lse = torch.logaddexp(lse, (fs @ v.t()).logsumexp(1))               # B x C -> B
            if hs is not None:
                lse_h = torch.logaddexp(lse_h, (hs @ v.t()).logsumexp(1))
        big_s = f.new_zeros(b)                                                   # B, S_i
        if hs is not None:
            for s in range(0, n, chunk):
                v = bank[s:s + chunk]
                z, h = fs @ v.t(), hs @ v.t()                                    # B x C each
                big_s += (torch.exp(z - lse[:, None]) * (z - h)).sum(1)
        z_pos = torch.einsum("bd,bmd->bm", fs, bank[pos_idx]).masked_fill(~pos_mask, float("-inf"))  # B x M
        l1 = (lse - z_pos.logsumexp(1)).mean()
        l2 = ((big_s - lse + lse_h) * l2_weights).sum() if hs is not None else f.new_zeros(())
        ctx.save_for_backward(f, bank, hard, pos_idx, z_pos, l2_weights, lse, big_s)
        ctx.temperature, ctx.chunk = temperature, chunk
        return torch.stack([l1, l2])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        f, bank, hard, pos_idx, z_pos, l2_weights, lse, big_s = ctx.saved_tensors
        tau, chunk = ctx.temperature, ctx.chunk
        fs = f / tau
        hs = None if hard is None else hard / tau
        b, n = f.shape[0], bank.shape[0]
        w1 = grad[0] / b                                                         # scalar
        w2 = (grad[1] * l2_weights)[:, None]                                     # B x 1
        grad_f = torch.zeros_like(f)                                             # B x d
        for s in range(0, n, chunk):
            v = bank[s:s + chunk]                                                # C x d
            z = fs @ v.t()                                                       # B x C
            p = torch.exp(z - lse[:, None])                                      # B x C, p_ik
            g = w1 * p
            if hs is not None:
                g = g + w2 * p * (z - hs @ v.t() - big_s[:, None])
            grad_f += g @ v                                                      # B x d
        r = torch.softmax(z_pos, dim=1)                                          # B x M, softmax within P_i
        grad_f -= w1 * torch.einsum("bm,bmd->bd", r, bank[pos_idx])
        return grad_f / tau, None, None, None, None, None, None, None


class ChunkedISLLoss(torch.nn.Module):
    """L1 + lambda L2 computed over chunks of `chunk_size` bank rows (see the module docstring).

    forward(features B x d, bank N x d, pos_idx / pos_mask B x M, hard B x d or None, hard_valid B bool)
    -> {"l1", "l2", "loss"}; gradient flows into `features` only (the bank and the hard features are targets).
    """

    def __init__(self, temperature: float = 0.1, lam: float = 0.5, l2_mean: str = "valid",
                 chunk_size: int = 65536) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.lam, self.l2_mean = check_l2_args(lam, l2_mean)
        if chunk_size < 1:
            raise ValueError(f"chunk_size (isl.bank_chunk) must be >= 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, lam={self.lam}, l2_mean={self.l2_mean}, chunk_size={self.chunk_size}"

    def forward(self, features: torch.Tensor, bank: torch.Tensor, pos_idx: torch.Tensor, pos_mask: torch.Tensor,
                hard: torch.Tensor | None = None, hard_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        b = features.shape[0]
        if features.dim() != 2 or bank.dim() != 2 or features.shape[1] != bank.shape[1]:
            raise ValueError(f"features B x d and bank N x d must share d, got {tuple(features.shape)} and "
                             f"{tuple(bank.shape)}")
        if pos_idx.shape != pos_mask.shape or pos_idx.dim() != 2 or pos_idx.shape[0] != b:
            raise ValueError(f"pos_idx and pos_mask must both be B x M with B = {b} (use PositiveSets.padded)")
        if self.lam == 0:
            hard = None
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32  # float32 at least
        weights = features.new_zeros(b, dtype=dtype)
        if hard is not None:
            valid = (torch.ones(b, dtype=torch.bool, device=features.device) if hard_valid is None
                     else hard_valid.to(features.device, torch.bool))
            denom = b if self.l2_mean == "batch" else valid.sum().clamp(min=1)
            weights = valid.to(dtype) / denom                                     # B
            hard = hard.detach().to(dtype)
        terms = _ChunkedTerms.apply(features.to(dtype), bank.detach().to(dtype), hard, pos_idx.to(torch.int64),
                                    pos_mask.to(torch.bool), weights, self.temperature, self.chunk_size)
        l1, l2 = terms[0], terms[1]
        return {"l1": l1, "l2": l2, "loss": l1 + self.lam * l2}
