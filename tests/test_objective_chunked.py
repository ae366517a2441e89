"""ChunkedISLLoss (isl.bank_chunk > 0) equals the plain ISLLoss in value and gradient, and never holds a B x N
tensor for backward."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from isl.objective import ISLLoss
from isl.objective_chunked import ChunkedISLLoss
from isl.rundir import RunDir, read_metrics
from isl.train import run_isl

from test_train_isl import tiny_cfg

B, N, D, M = 6, 50, 8, 4


def _case(seed: int):
    g = torch.Generator().manual_seed(seed)
    bank = F.normalize(torch.randn(N, D, generator=g, dtype=torch.float64), dim=1)
    f = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=1)
    hard = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=1)
    pos_idx = torch.randint(0, N, (B, M), generator=g)
    pos_idx[:, 0] = torch.arange(B)                                  # i itself
    pos_mask = torch.rand(B, M, generator=g) > 0.4
    pos_mask[:, 0] = True
    pos_mask[1] = False                                               # anchor 1: P_i = {i}
    pos_mask[1, 0] = True
    valid = torch.tensor([True, False, True, True, False, True])
    return bank, f, hard, pos_idx, pos_mask, valid


def _reference(f, bank, pos_idx, pos_mask, hard, valid, tau, lam, l2_mean):
    """The formulas in float64, written out: L1_i = lse_k z_ik - lse_{P_i} z_ik; L2_i = KL(p_i || p^hard_i)."""
    log_p = F.log_softmax(f @ bank.t() / tau, dim=1)                                   # B x N
    l1 = -log_p.gather(1, pos_idx).masked_fill(~pos_mask, -math.inf).logsumexp(1).mean()
    l2 = torch.zeros((), dtype=f.dtype)
    if hard is not None:
        log_q = F.log_softmax(hard @ bank.t() / tau, dim=1)
        kl = (log_p.exp() * (log_p - log_q)).sum(1)                                      # B
        l2 = (kl * valid).sum() / (len(valid) if l2_mean == "batch" else valid.sum())
    return {"l1": l1, "l2": l2, "loss": l1 + lam * l2}


@pytest.mark.parametrize("chunk", [7, 50, 1000])
@pytest.mark.parametrize("l2_mean, with_hard, lam", [("valid", True, 0.5), ("batch", True, 2.0),
                                                     ("valid", False, 0.5), ("valid", True, 0.0)])
def test_values_and_gradients_equal_the_plain_form(chunk, l2_mean, with_hard, lam):
    bank, f0, hard, pos_idx, pos_mask, valid = _case(chunk)
    tau = 0.1
    f = f0.clone().requires_grad_()
    plain = _reference(f, bank, pos_idx, pos_mask, hard if with_hard else None, valid, tau, lam, l2_mean)
    plain["loss"].backward()
    g = f0.clone().requires_grad_()
    chunked = ChunkedISLLoss(tau, lam, l2_mean, chunk_size=chunk)(g, bank, pos_idx, pos_mask,
                                                                   hard if with_hard else None, valid)
    chunked["loss"].backward()
    for key in ("l1", "l2", "loss") if lam > 0 else ("l1", "loss"):  # lam = 0: no L2 is computed at all
        torch.testing.assert_close(chunked[key], plain[key], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g.grad, f.grad, rtol=1e-9, atol=1e-12)
    # and the project's plain ISLLoss (float32) agrees to float32 precision
    f32 = f0.float().clone().requires_grad_()
    ours = ISLLoss(tau, lam, l2_mean)(f32 @ bank.float().t() / tau, pos_idx, pos_mask,
                                      hard.float() @ bank.float().t() / tau if with_hard else None, valid)
    ours["loss"].backward()
    torch.testing.assert_close(chunked["loss"].float(), ours["loss"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g.grad.float(), f32.grad, rtol=1e-4, atol=1e-5)


def test_no_b_by_n_tensor_is_kept_for_backward():
    bank, f0, hard, pos_idx, pos_mask, valid = _case(0)
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
        f = f0.clone().requires_grad_()
        ChunkedISLLoss(0.1, 0.5, chunk_size=7)(f, bank, pos_idx, pos_mask, hard, valid)["loss"].backward()
        plain_f = f0.clone().requires_grad_()
        n_chunked = len(shapes)
        ISLLoss(0.1, 0.5)(plain_f @ bank.t() / 0.1, pos_idx, pos_mask, hard @ bank.t() / 0.1, valid)["loss"].backward()
    assert (B, N) not in shapes[:n_chunked]
    assert (B, N) in shapes[n_chunked:]  # the plain form keeps B x N tensors (so the hook sees them)


def test_a_tiny_run_with_bank_chunk_trains(tmp_path):
    cfg = tiny_cfg(tmp_path, "isl.bank_chunk=300", "isl.mining.strategy=knn")
    run = RunDir.create(cfg, enable_tensorboard=False)
    results = run_isl(cfg, run)
    losses = [r["loss"] for r in read_metrics(run.path) if r["stage"] == "encoder"]
    assert losses and all(math.isfinite(v) for v in losses) and results["pairs"] > 0
