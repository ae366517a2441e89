"""MemoryBank (isl/memory_bank.py): init, logits, the momentum update against its formula, state round trip."""
import io

import pytest
import torch
import torch.nn.functional as F

from isl.memory_bank import MemoryBank, similarities_at


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_init_unit_rows_and_seeded():
    a = MemoryBank(50, 8, generator=_gen(0))
    b = MemoryBank(50, 8, generator=_gen(0))
    c = MemoryBank(50, 8, generator=_gen(1))
    assert a.bank.shape == (50, 8) and len(a) == 50 and a.dim == 8
    torch.testing.assert_close(a.bank.norm(dim=1), torch.ones(50))
    assert torch.equal(a.bank, b.bank) and not torch.equal(a.bank, c.bank)
    assert "bank" in a.state_dict()


def test_logits_formula_chunked_and_gradient():
    bank = MemoryBank(37, 5, generator=_gen(0))
    f = F.normalize(torch.randn(4, 5, generator=_gen(1)), dim=1).requires_grad_()
    out = bank.logits(f, 0.1)
    fd = f.detach()
    for b in range(4):  # per-sample loop over the formula f_b . v_k / tau
        for k in range(37):
            expected = sum(float(fd[b, j]) * float(bank.bank[k, j]) for j in range(5)) / 0.1
            assert abs(float(out.detach()[b, k]) - expected) < 1e-4
    torch.testing.assert_close(bank.logits(f, 0.1, chunk_size=10), out)
    out.sum().backward()
    torch.testing.assert_close(f.grad, bank.bank.sum(0).expand(4, 5) / 0.1)


def test_update_matches_formula_with_duplicates():
    eta = 0.3
    bank = MemoryBank(10, 4, momentum=eta, generator=_gen(0))
    before = bank.bank.clone()
    idx = torch.tensor([2, 7, 2, 5, 2])
    feats = torch.randn(5, 4, generator=_gen(1))
    bank.update(idx, feats)
    for i in range(10):  # loop reference: duplicates are averaged, then one momentum step
        rows = [b for b in range(5) if int(idx[b]) == i]
        if not rows:
            assert torch.equal(bank.bank[i], before[i])
            continue
        mean = sum(feats[b] for b in rows) / len(rows)
        mixed = eta * mean + (1 - eta) * before[i]
        torch.testing.assert_close(bank.bank[i], mixed / mixed.norm())
    torch.testing.assert_close(bank.bank.norm(dim=1), torch.ones(10))


def test_update_momentum_one_overwrites_and_cancelling_mix_keeps_row():
    bank = MemoryBank(6, 3, momentum=1.0, generator=_gen(0))
    f = torch.tensor([[3.0, 0.0, 4.0]])
    bank.update(torch.tensor([1]), f)
    torch.testing.assert_close(bank.bank[1], torch.tensor([0.6, 0.0, 0.8]))
    half = MemoryBank(6, 3, momentum=0.5, generator=_gen(0))
    old = half.bank[2].clone()
    half.update(torch.tensor([2]), -old[None])  # 0.5 (-v) + 0.5 v = 0: no direction, keep the row
    assert torch.equal(half.bank[2], old) and torch.isfinite(half.bank).all()


def test_state_dict_round_trip_weights_only():
    bank = MemoryBank(20, 4, momentum=0.5, generator=_gen(0))
    bank.update(torch.arange(5), torch.randn(5, 4, generator=_gen(2)))
    buf = io.BytesIO()
    torch.save(bank.state_dict(), buf)
    buf.seek(0)
    fresh = MemoryBank(20, 4, generator=_gen(9))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh.bank, bank.bank)


@pytest.mark.parametrize("momentum", [0.0, -0.1, 1.5])
def test_bad_momentum(momentum):
    with pytest.raises(ValueError, match="momentum"):
        MemoryBank(10, 4, momentum=momentum)


def test_bad_inputs():
    bank = MemoryBank(10, 4, generator=_gen(0))
    with pytest.raises(ValueError, match="temperature"):
        bank.logits(torch.randn(2, 4), 0.0)
    with pytest.raises(ValueError, match="B x 4"):
        bank.logits(torch.randn(2, 3), 0.1)
    with pytest.raises(IndexError, match="indices"):
        bank.update(torch.tensor([0, 10]), torch.randn(2, 4))
    with pytest.raises(ValueError, match="length 2"):
        bank.update(torch.tensor([0]), torch.randn(2, 4))


@pytest.mark.parametrize("n,k", [(30, 4), (12, 8)])  # gather path (N > 16 K) and matmul path
def test_similarities_at_against_loop(n, k):
    bank = F.normalize(torch.randn(n, 6, generator=_gen(0)), dim=1)
    f = torch.randn(5, 6, generator=_gen(1))
    idx = torch.randint(0, n, (5, k), generator=_gen(2))
    out = similarities_at(f, bank, idx, max_elements=64)  # small blocks: the block loop is exercised
    for b in range(5):
        for j in range(k):
            assert abs(float(out[b, j]) - float(f[b] @ bank[idx[b, j]])) < 1e-5
    torch.testing.assert_close(similarities_at(f, bank, idx, similarities=f @ bank.t()), out)
