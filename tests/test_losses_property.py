"""Property-based check (hypothesis) of every registered baseline loss and the ISL objective: on random batches
of 2-64 rows at scales 1e-6 to 1e3, with duplicated and all-zero rows, the loss and its gradients are finite and
not absurdly large (< 1e6), or the loss refuses the batch with a ValueError that says why."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baselines.registry import LOSSES, build_loss
from isl.objective import L2_MEANS, ISLLoss
from isl.objective_fused import FusedISLLoss

NUM_CLASSES = 6
GRAD_LIMIT = 1e6
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def batches(draw, max_rows: int = 64):
    """(embeddings B x d, labels B): random rows at one scale, then some rows copied from row 0, some zeroed."""
    rows = draw(st.integers(2, max_rows))
    dim = draw(st.integers(2, 16))
    scale = draw(st.sampled_from([1e-6, 1e-3, 1.0, 1e3]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(rows, dim, generator=g) * scale
    duplicates = draw(st.integers(0, rows - 1))
    x[1:1 + duplicates] = x[0]
    zeros = draw(st.integers(0, rows))
    if zeros:
        x[torch.randperm(rows, generator=g)[:zeros]] = 0.0
    labels = torch.randint(0, draw(st.integers(1, NUM_CLASSES)), (rows,), generator=g)
    return x, labels


def assert_finite_and_bounded(value: torch.Tensor, grads: dict[str, torch.Tensor | None], what: str) -> None:
    assert value.dim() == 0 and torch.isfinite(value), f"{what}: loss {value}"
    for name, grad in grads.items():
        if grad is None:
            continue
        assert torch.isfinite(grad).all(), f"{what}: non-finite gradient of {name}"
        assert grad.abs().max() < GRAD_LIMIT, f"{what}: gradient of {name} up to {grad.abs().max():.3g}"


@pytest.mark.parametrize("name", sorted(LOSSES))
@SETTINGS
@given(batch=batches())
def test_every_registered_loss_is_finite_or_refuses(name, batch):
    x, labels = batch
    x = x.clone().requires_grad_(True)
    loss_fn = build_loss(name, num_classes=NUM_CLASSES, embedding_size=x.shape[1])
    try:
        value = loss_fn(x, labels)
    except ValueError as err:  # a clear refusal is allowed: it must say something
        assert len(str(err)) > 20, f"{name}: unhelpful error {err!r}"
        return
    value.backward()
    grads = {"embeddings": x.grad, **{n: p.grad for n, p in loss_fn.named_parameters()}}
    assert_finite_and_bounded(value, grads, f"{name} on {tuple(x.shape)}, max |x| {float(x.detach().abs().max()):.3g}")


@pytest.mark.parametrize("objective_cls", [ISLLoss, FusedISLLoss])
@SETTINGS
@given(batch=batches(max_rows=32), bank_rows=st.integers(4, 64), lam=st.sampled_from([0.0, 0.5, 2.0]),
       temperature=st.sampled_from([0.05, 0.1, 1.0]), l2_mean=st.sampled_from(L2_MEANS))
def test_isl_objective_is_finite(objective_cls, batch, bank_rows, lam, temperature, l2_mean):
    """The ISL objective on features f (B x d, degenerate rows included) against a bank of unit rows: P_i = {i}
    plus up to three other rows, a hard positive (a perturbed copy of f) valid for a random subset of anchors."""
    f, _ = batch
    b, d = f.shape
    g = torch.Generator().manual_seed(b * 131 + d)
    n = max(bank_rows, b)
    bank = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)                 # N x d, V
    anchors = torch.arange(b)                                                                    # bank rows of f
    pos_idx = (anchors[:, None] + torch.arange(4)) % n                                           # B x 4, distinct
    pos_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool), torch.rand(b, 3, generator=g) < 0.5], dim=1)
    hard = f + 0.1 * f.abs().max() * torch.randn(b, d, generator=g)                              # B x d, no grad
    hard_valid = torch.rand(b, generator=g) < 0.7                                                # B
    f = f.clone().requires_grad_(True)
    objective = objective_cls(temperature, lam, l2_mean=l2_mean)
    logits = f @ bank.t() / temperature                                                          # B x N
    terms = objective(logits, pos_idx, pos_mask, hard @ bank.t() / temperature, hard_valid)
    terms["loss"].backward()
    largest = float(f.detach().abs().max())
    assert_finite_and_bounded(terms["loss"], {"features": f.grad},
                              f"{objective_cls.__name__} on {tuple(f.shape)}, max |f| {largest:.3g}")
