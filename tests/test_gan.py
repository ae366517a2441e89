"""The proxy GAN (isl/gan.py): shapes, unit norm, loss formulas against loops, training directions."""
import math

import pytest
import torch
import torch.nn.functional as F

from isl.gan import (Discriminator, EarlyStopping, Generator, discriminator_loss, gan_quality, gan_step,
                     generator_loss)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _unit(b, d, seed):
    return F.normalize(torch.randn(b, d, generator=_gen(seed)), dim=1)


def _easy_triplets(b, d, seed):
    """Real triplets with a clear structure: p close to a, n far from it."""
    a = _unit(b, d, seed)
    p = F.normalize(a + 0.1 * torch.randn(b, d, generator=_gen(seed + 1)), dim=1)
    n = F.normalize(-a + 0.3 * torch.randn(b, d, generator=_gen(seed + 2)), dim=1)
    return a, p, n


def test_generator_unit_norm_noise_and_determinism():
    torch.manual_seed(0)
    G = Generator(8, noise_dim=4)
    a, p, n = _unit(5, 8, 1), _unit(5, 8, 2), _unit(5, 8, 3)
    g1, g2 = G(a, p, n, generator=_gen(4)), G(a, p, n, generator=_gen(5))
    torch.testing.assert_close(g1.norm(dim=1), torch.ones(5))
    assert not torch.allclose(g1, g2)  # z matters
    assert torch.equal(g1, G(a, p, n, generator=_gen(4)))  # seeded
    det = Generator(8, noise_dim=0)
    assert torch.equal(det(a, p, n), det(a, p, n)) and det.sample_noise(5).shape == (5, 0)
    assert sum(m.out_features for m in det.net if isinstance(m, torch.nn.Linear)) == 16 + 8 + 8  # 3d->2d->d->d
    zero = Generator(8, noise_dim=0)
    for m in zero.net:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.zeros_(m.weight), torch.nn.init.zeros_(m.bias)
    assert torch.isfinite(zero(a, p, n)).all()  # zero output: finite, no NaN from the normalisation


def test_discriminator_returns_logits():
    D = Discriminator(8)
    with torch.no_grad():
        D.net[-1].bias.fill_(5.0)
        D.net[-1].weight.zero_()
    out = D(_unit(3, 8, 0), _unit(3, 8, 1), _unit(3, 8, 2))
    assert out.shape == (3,) and torch.allclose(out, torch.full((3,), 5.0))  # not squashed by a sigmoid
    with pytest.raises(ValueError, match="B x 8"):
        D(_unit(3, 8, 0), _unit(3, 7, 1), _unit(3, 8, 2))


def test_losses_against_loop():
    real, fp, fn = (torch.randn(6, generator=_gen(seed)) for seed in range(3))
    alpha = 0.7
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))
    d_ref = sum(-math.log(sig(r)) - math.log(1 - sig(x)) - alpha * math.log(1 - sig(y))
                for r, x, y in zip(real.tolist(), fp.tolist(), fn.tolist())) / 6
    g_ref = sum(-math.log(sig(x)) - alpha * math.log(sig(y)) for x, y in zip(fp.tolist(), fn.tolist())) / 6
    assert abs(float(discriminator_loss(real, fp, fn, alpha)) - d_ref) < 1e-5
    assert abs(float(generator_loss(fp, fn, alpha)) - g_ref) < 1e-5


def _nets(d, seed, lr_g, lr_d, noise=4):
    torch.manual_seed(seed)
    G, D = Generator(d, noise_dim=noise), Discriminator(d)
    return G, D, torch.optim.Adam(G.parameters(), lr=lr_g), torch.optim.Adam(D.parameters(), lr=lr_d)


def test_gan_step_trains_d_and_leaves_g_alone_in_d_step():
    G, D, opt_g, opt_d = _nets(8, 0, lr_g=0.0, lr_d=1e-2)
    a, p, n = _easy_triplets(64, 8, 10)
    g_before = [t.clone() for t in G.parameters()]
    first = gan_step(G, D, opt_g, opt_d, a, p, n, alpha=1.0, generator=_gen(1))
    for _ in range(60):
        last = gan_step(G, D, opt_g, opt_d, a, p, n, alpha=1.0, generator=_gen(1))
    assert set(first) == {"d_loss", "g_loss", "d_real", "d_fake_pos", "d_fake_neg"}
    assert float(last["d_loss"]) < 0.5 * float(first["d_loss"])
    assert float(last["d_real"]) > 0.8 and float(last["d_fake_pos"]) < 0.2
    assert all(torch.equal(x, y) for x, y in zip(g_before, G.parameters()))  # lr 0: G untouched


def test_gan_step_g_learns_against_frozen_d():
    G, D, opt_g, opt_d = _nets(8, 1, lr_g=1e-2, lr_d=0.0)
    a, p, n = _easy_triplets(64, 8, 20)
    d_before = [t.clone() for t in D.parameters()]
    first = gan_step(G, D, opt_g, opt_d, a, p, n, alpha=1.0, generator=_gen(2))
    for _ in range(60):
        last = gan_step(G, D, opt_g, opt_d, a, p, n, alpha=1.0, generator=_gen(2))
    assert float(last["g_loss"]) < float(first["g_loss"])
    assert all(torch.equal(x, y) for x, y in zip(d_before, D.parameters()))


def test_gan_steps_and_quality():
    G, D, opt_g, opt_d = _nets(8, 2, lr_g=1e-3, lr_d=1e-2)
    a, p, n = _easy_triplets(128, 8, 30)
    batches = [(a[i:i + 32], p[i:i + 32], n[i:i + 32]) for i in range(0, 128, 32)]
    before = gan_quality(G, D, a, p, n, generator=_gen(3))
    for _ in range(10):
        for batch in batches:
            stats = gan_step(G, D, opt_g, opt_d, *batch, alpha=1.0, generator=_gen(4))
    after = gan_quality(G, D, a, p, n, generator=_gen(3))
    assert all(math.isfinite(float(v)) for v in stats.values())
    assert after["accuracy"] > before["accuracy"] and after["accuracy"] > 0.7
    assert after["d_real"] > after["d_fake_pos"]
    manual = (after["acc_real"] + (after["acc_fake_pos"] + after["acc_fake_neg"]) / 2) / 2
    assert abs(after["accuracy"] - manual) < 1e-12


def test_early_stopping():
    es = EarlyStopping(patience=2, min_delta=0.1)
    assert [es.step(v) for v in [1.0, 0.95, 0.5, 0.45, 0.44]] == [False, False, False, False, True]
    again = EarlyStopping(patience=2, min_delta=0.1)
    again.load_state_dict(es.state_dict())
    assert again.best == 0.5 and again.bad_steps == 2
    up = EarlyStopping(patience=1, mode="max")
    assert [up.step(v) for v in [0.1, 0.2, 0.2]] == [False, False, True]
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


def test_bad_alpha():
    G, D, opt_g, opt_d = _nets(4, 0, 1e-3, 1e-3)
    a, p, n = _easy_triplets(4, 4, 0)
    with pytest.raises(ValueError, match="alpha"):
        gan_step(G, D, opt_g, opt_d, a, p, n, alpha=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        gan_quality(G, D, a, p, n, alpha=-0.5)
