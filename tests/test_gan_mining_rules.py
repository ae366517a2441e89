"""The GAN-mining rules of the GAN issue: AUC, loss weights and the relative threshold, triplet rules, the D/G
step ratio and the ranked quota fill, each against a direct reference (scikit-learn, a loop, or the formula)."""
import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from isl.gan import (Discriminator, Generator, calibrated_logit, discriminator_loss, gan_step, loss_weights, roc_auc,
                     uninformed_logit, uninformed_score)
from isl.mining import MiningResult, mine_gan, select_pairs
from isl.positives import PositiveSets
from isl.triplets import anchor_features, build_triplets
from mining_helpers import mining_setup


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------------- AUC
@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_sklearn(seed):
    g = _gen(seed)
    pos = torch.randn(50 + seed, generator=g) + 0.5
    neg = torch.randn(70, generator=g)
    if seed % 2:  # ties inside and across the two sides
        pos, neg = (pos * 2).round() / 2, (neg * 2).round() / 2
    expected = roc_auc_score([1] * len(pos) + [0] * len(neg), torch.cat([pos, neg]).numpy())
    assert roc_auc(pos, neg) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_degenerate_inputs():
    assert roc_auc(torch.ones(5), torch.ones(3)) == 0.5          # all tied: no information
    assert roc_auc(torch.tensor([2.0]), torch.tensor([1.0])) == 1.0
    assert math.isnan(roc_auc(torch.zeros(0), torch.ones(3)))


# ------------------------------------------------------------------------------- loss weights and threshold
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 3.0])
def test_reference_weights_follow_the_reference_formula(alpha):
    """Reference code: (BCE(real) + BCE(a,g,n) * 1/(1+alpha) + BCE(a,p,g) * alpha/(1+alpha)) / 2."""
    g = _gen(1)
    real, fp, fn = (torch.randn(16, generator=g) for _ in range(3))
    bce = lambda x, t: F.binary_cross_entropy(torch.sigmoid(x), torch.full_like(x, t))
    expected = (bce(real, 1.0) + bce(fp, 0.0) / (1 + alpha) + bce(fn, 0.0) * alpha / (1 + alpha)) / 2
    assert float(discriminator_loss(real, fp, fn, alpha, "reference")) == pytest.approx(float(expected), rel=1e-5)
    assert loss_weights(alpha, "paper") == (1.0, 1.0, alpha)


@pytest.mark.parametrize("mode", ["paper", "reference"])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_uninformed_d_scores_the_uninformed_level(mode, alpha):
    """A D that sees real and fake triplets it cannot tell apart (identical inputs) converges to s0; the
    calibrated score of that D is 0.5 under both weightings."""
    c = torch.zeros((), requires_grad=True)  # a constant logit: the best an uninformed D can do
    opt = torch.optim.LBFGS([c], max_iter=100, line_search_fn="strong_wolfe")
    ones = torch.ones(8)

    def closure():
        opt.zero_grad()
        loss = discriminator_loss(c * ones, c * ones, c * ones, alpha, mode)
        loss.backward()
        return loss
    opt.step(closure)
    assert float(torch.sigmoid(c.detach())) == pytest.approx(uninformed_score(alpha, mode), abs=1e-4)
    assert float(torch.sigmoid(calibrated_logit(c.detach(), alpha, mode))) == pytest.approx(0.5, abs=1e-4)
    expected_s0 = 1 / (2 + alpha) if mode == "paper" else 0.5
    assert uninformed_score(alpha, mode) == pytest.approx(expected_s0)


@pytest.mark.parametrize("h", [0.3, 0.5, 0.7])
def test_relative_threshold_is_a_shifted_absolute_threshold(h):
    """sigmoid(l - offset) > h  <=>  sigmoid(l) > sigmoid(logit(h) + offset): the same pairs either way."""
    bank, pos, G, D = mining_setup()
    offset = uninformed_logit(1.0, "paper")  # -log 2
    kw = dict(radius=1.0, n_proxies=3, topk=5, num_candidates=10, backend="torch")
    rel = mine_gan(torch.arange(40), bank, pos, G, D, threshold=h, logit_offset=offset, generator=_gen(3), **kw)
    h_abs = 1 / (1 + math.exp(-(math.log(h / (1 - h)) + offset)))
    ab = mine_gan(torch.arange(40), bank, pos, G, D, threshold=h_abs, generator=_gen(3), **kw)
    assert torch.equal(rel.accepted, ab.accepted) and rel.num_accepted_anchors > 0
    assert torch.equal(rel.pairs_i, ab.pairs_i) and torch.equal(rel.pairs_j, ab.pairs_j)
    # the scores reported are the calibrated ones
    assert torch.allclose(torch.logit(rel.scores.double()), torch.logit(ab.scores.double()) - offset, atol=1e-4)


# ------------------------------------------------------------------------------------------- triplet rules
def _triplet_setup(n=30, d=5):
    g = _gen(0)
    pos = PositiveSets(n)
    pos.add_pairs(torch.randint(0, n, (20,), generator=g), torch.randint(0, n, (20,), generator=g))
    bank = F.normalize(torch.randn(n, d, generator=g), dim=1)
    views = F.normalize(bank + 0.3 * torch.randn(n, d, generator=g), dim=1)
    return pos, bank, views


@pytest.mark.parametrize("anchor", ["view", "bank_row"])
def test_positive_other_is_never_the_anchor_and_negatives_are_outside_p(anchor):
    pos, bank, views = _triplet_setup()
    anchors = torch.arange(30).repeat(20)                   # every anchor many times: every random branch
    a, alt = anchor_features(anchors, bank, views[anchors], anchor)
    a, p, n = build_triplets(a, anchors, bank, pos, num_candidates=5, generator=_gen(2), positive_source="other",
                             alt_features=alt)
    members = [set(pos.padded(torch.tensor([i]))[0][0].tolist()) for i in range(30)]
    for b, i in enumerate(anchors.tolist()):
        assert not torch.equal(p[b], a[b]), f"anchor {i}: p is the anchor's own vector"
        mined = members[i] - {i}
        if mined:  # p is the bank row of a mined positive other than i
            assert any(torch.equal(p[b], bank[j]) for j in mined), i
        else:      # the other one of {view feature, bank row}
            assert torch.equal(p[b], bank[i] if anchor == "view" else views[i])
        assert not any(torch.equal(n[b], bank[j]) for j in members[i]), f"anchor {i}: negative inside P_i"
    expected_a = views[anchors] if anchor == "view" else bank[anchors]
    assert torch.equal(a, expected_a)


def test_positive_mined_includes_self_as_the_paper_says():
    """The paper's rule (kept for the ablation): with a bank-row anchor, p = a happens when i is drawn."""
    pos, bank, _ = _triplet_setup()
    anchors = torch.arange(30).repeat(20)
    a, p, _ = build_triplets(bank[anchors], anchors, bank, pos, 5, _gen(2), positive_source="mined")
    assert bool((a == p).all(dim=1).any())


# ------------------------------------------------------------------------------------------- D/G step ratio
@pytest.mark.parametrize("d_steps", [1, 3])
def test_d_steps_updates_d_that_many_times_per_g_update(d_steps):
    torch.manual_seed(0)
    G, D = Generator(4, noise_dim=2), Discriminator(4)
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
    a, p, n = (F.normalize(torch.randn(8, 4, generator=_gen(s)), dim=1) for s in range(3))
    for _ in range(2):
        gan_step(G, D, opt_g, opt_d, a, p, n, alpha=1.0, generator=_gen(5), d_steps=d_steps)
    step = lambda opt: int(next(iter(opt.state.values()))["step"])
    assert step(opt_d) == 2 * d_steps and step(opt_g) == 2


# ------------------------------------------------------------------------------------------- ranked fill
def _first_pairs(pi, pj, order, room):
    """The first `room` distinct undirected pairs of the candidates taken in `order`."""
    seen, out = set(), []
    for e in order:
        key = (min(pi[e], pj[e]), max(pi[e], pj[e]))
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out[:room]


def _loop_ranked(pi, pj, score, sim, room):
    order = sorted(range(len(pi)), key=lambda e: (-score[e], -sim[e]))  # stable: earlier candidates first
    return _first_pairs(pi, pj, order, room)


def _loop_spread(pi, pj, score, sim, room):
    ranked = sorted(range(len(pi)), key=lambda e: (-score[e], -sim[e]))   # stable: earlier candidates first
    seen_anchor = {}
    within = {}
    for e in ranked:                                                     # rank of e among its anchor's candidates
        within[e] = seen_anchor.get(pi[e], 0)
        seen_anchor[pi[e]] = within[e] + 1
    return _first_pairs(pi, pj, sorted(ranked, key=lambda e: within[e]), room)


@pytest.mark.parametrize("room", [0, 3, 10, 100])
@pytest.mark.parametrize("fill, reference, seed", [("ranked", _loop_ranked, 0), ("spread", _loop_spread, 10)])
def test_ordered_fills_against_a_loop(fill, reference, seed, room):
    g = _gen(seed + room)
    pi, pj = torch.randint(0, 12, (40,), generator=g), torch.randint(0, 12, (40,), generator=g)
    keep = pi != pj
    pi, pj = pi[keep], pj[keep]
    score = torch.randint(0, 4, pi.shape, generator=g).double() / 4   # ties on the score
    sim = torch.rand(pi.shape, generator=g).double()
    res = MiningResult(pi, pj, torch.arange(12), torch.ones(12, dtype=torch.bool), None, torch.zeros(12), 12, 0,
                       score, sim)
    i, j = select_pairs(res, room, fill, num_samples=12)
    assert list(zip(i.tolist(), j.tolist())) == reference(pi.tolist(), pj.tolist(), score.tolist(), sim.tolist(), room)


def test_spread_fill_reaches_more_anchors_than_ranked():
    """One dense anchor with many very similar candidates takes a ranked quota; spread gives every anchor one."""
    pi = torch.tensor([0, 0, 0, 0, 1, 2, 3])
    pj = torch.tensor([4, 5, 6, 7, 8, 9, 10])
    sim = torch.tensor([0.99, 0.98, 0.97, 0.96, 0.5, 0.4, 0.3]).double()
    res = MiningResult(pi, pj, torch.arange(11), torch.ones(11, dtype=torch.bool), None, torch.zeros(11), 4, 0,
                       sim, sim)
    assert select_pairs(res, 4, "ranked", num_samples=11)[0].tolist() == [0, 0, 0, 0]
    assert sorted(select_pairs(res, 4, "spread", num_samples=11)[0].tolist()) == [0, 1, 2, 3]


def test_random_fill_is_a_subset_of_the_candidates():
    pi, pj = torch.arange(10), torch.arange(1, 11)
    res = MiningResult(pi, pj, torch.arange(11), torch.ones(11, dtype=torch.bool), None, torch.zeros(11), 11, 0)
    i, j = select_pairs(res, 4, "random", generator=_gen(0))
    assert len(i) == 4 and set(zip(i.tolist(), j.tolist())) <= set(zip(pi.tolist(), pj.tolist()))
    assert torch.equal(select_pairs(res, 20, "random", generator=_gen(0))[0], pi)
    with pytest.raises(ValueError, match="ranked' needs"):
        select_pairs(res, 4, "ranked")
