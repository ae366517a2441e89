"""PositiveSets (isl/positives.py) against a Python-set reference; sampling, hard positives/negatives, state."""
import io

import pytest
import torch
import torch.nn.functional as F

from isl.positives import PositiveSets


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _random_sets(n, rounds, per_round, seed):
    """The same random pairs in a PositiveSets and in a reference dict of Python sets."""
    g = _gen(seed)
    pos = PositiveSets(n)
    ref = {i: {i} for i in range(n)}
    for _ in range(rounds):
        i = torch.randint(0, n, (per_round,), generator=g)
        j = torch.randint(0, n, (per_round,), generator=g)
        before = {(a, b) for a in ref for b in ref[a] if a < b}
        for a, b in zip(i.tolist(), j.tolist()):
            ref[a].add(b)
            ref[b].add(a)
        after = {(a, b) for a in ref for b in ref[a] if a < b}
        assert pos.add_pairs(i, j) == len(after) - len(before)
    return pos, ref


def test_add_pairs_symmetric_no_duplicates_against_sets():
    n = 15
    pos, ref = _random_sets(n, rounds=4, per_round=12, seed=0)
    assert pos.num_pairs() == sum(len(s) - 1 for s in ref.values()) // 2
    for i in range(n):  # CSR rows: sorted, unique, no self, equal to the reference
        row = pos.indices[pos.indptr[i]:pos.indptr[i + 1]].tolist()
        assert row == sorted(ref[i] - {i})
    assert pos.degree(torch.arange(n)).tolist() == [len(ref[i]) - 1 for i in range(n)]
    pi, pj = pos.pairs()
    assert sorted(zip(pi.tolist(), pj.tolist())) == sorted((a, b) for a in ref for b in ref[a] if a < b)
    assert pos.add_pairs(pi, pj) == 0 and pos.add_pairs(torch.tensor([3]), torch.tensor([3])) == 0


def test_padded_and_contains_against_sets():
    n = 12
    pos, ref = _random_sets(n, rounds=3, per_round=10, seed=1)
    anchors = torch.tensor([0, 5, 5, 11, 3])
    idx, mask = pos.padded(anchors)
    for b, a in enumerate(anchors.tolist()):
        assert int(idx[b, 0]) == a and bool(mask[b, 0])
        assert set(idx[b][mask[b]].tolist()) == ref[a] and int(mask[b].sum()) == len(ref[a])
    idx2, mask2 = pos.padded(anchors, include_self=False)
    for b, a in enumerate(anchors.tolist()):
        assert set(idx2[b][mask2[b]].tolist()) == ref[a] - {a}
    cand = torch.randint(0, n, (5, 30), generator=_gen(2))
    got = pos.contains(anchors, cand)
    for b, a in enumerate(anchors.tolist()):
        assert got[b].tolist() == [c in ref[a] for c in cand[b].tolist()]
    capped, cmask = pos.padded(anchors, max_size=2)
    assert capped.shape[1] <= 2 and bool(cmask[:, 0].all())


def test_empty_relation_padded_and_contains():
    pos = PositiveSets(5)
    idx, mask = pos.padded(torch.tensor([1, 4]))
    assert idx.tolist() == [[1], [4]] and mask.tolist() == [[True], [True]]
    assert pos.contains(torch.tensor([1]), torch.tensor([[1, 2]])).tolist() == [[True, False]]
    assert pos.pair_precision(torch.zeros(5, dtype=torch.long)) is None


def test_sample_positive_stays_in_set_and_covers_it():
    n = 10
    pos, ref = _random_sets(n, rounds=2, per_round=8, seed=3)
    anchors = torch.arange(n).repeat(200)
    draws = pos.sample_positive(anchors, _gen(4))
    for a in range(n):
        got = set(draws[anchors == a].tolist())
        assert got == ref[a]  # every member of P_i (i included) is drawn, nothing else
    mined_only = pos.sample_positive(anchors, _gen(5), include_self=False)
    for a in range(n):
        got = set(mined_only[anchors == a].tolist())
        assert got == (ref[a] - {a} or {a})


@pytest.mark.parametrize("shared", [False, True])
def test_sample_negatives_never_hit_crowded_sets(shared):
    n = 12
    pos = PositiveSets(n)
    g = _gen(6)
    for _ in range(6):  # crowded: most anchors end up with many positives
        pos.add_pairs(torch.randint(0, n, (12,), generator=g), torch.randint(0, n, (12,), generator=g))
    ref = {i: set(pos.padded(torch.tensor([i]))[0][0].tolist()) for i in range(n)}
    assert max(len(s) for s in ref.values()) >= n // 2
    anchors = torch.arange(n)
    neg = pos.sample_negatives(anchors, 500, _gen(7), shared=shared)
    assert neg.shape == (n, 500)
    for a in range(n):
        assert not (set(neg[a].tolist()) & ref[a])
        assert set(neg[a].tolist()) == set(range(n)) - ref[a]  # uniform over the complement: all drawn


def test_sample_negatives_full_set_raises():
    pos = PositiveSets(4)
    pos.add_pairs(torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="covers all"):
        pos.sample_negatives(torch.tensor([0]), 3)
    assert pos.sample_negatives(torch.tensor([1]), 50, _gen(0)).unique().tolist() == [2, 3]


@pytest.mark.parametrize("shared", [False, True])
def test_hardest_negative_against_loop(shared):
    n, d, k = 40, 6, 7
    pos, ref = _random_sets(n, rounds=2, per_round=30, seed=8)
    bank = F.normalize(torch.randn(n, d, generator=_gen(9)), dim=1)
    anchors = torch.tensor([0, 3, 17, 39, 3])
    f = torch.randn(5, d, generator=_gen(10))
    got = pos.hardest_negative(f, anchors, bank, k, _gen(11), shared=shared)
    via_sims = pos.hardest_negative(f, anchors, bank, k, _gen(11), similarities=f @ bank.t(), shared=shared)
    assert torch.equal(got, via_sims)
    cand = pos.sample_negatives(anchors, k, _gen(11), shared=shared)  # the same draws, replayed
    if shared:  # some candidates were redrawn for some anchors, so rows differ from the common draw
        assert not (cand == cand[:1]).all()
    for b in range(5):
        best = max(cand[b].tolist(), key=lambda j: float(f[b] @ bank[j]))
        assert int(got[b]) == best and best not in ref[int(anchors[b])]


@pytest.mark.parametrize("mode", ["least_similar", "most_similar"])
def test_hard_positive_against_loop(mode):
    n, d = 20, 5
    pos, ref = _random_sets(n, rounds=1, per_round=9, seed=12)
    bank = F.normalize(torch.randn(n, d, generator=_gen(13)), dim=1)
    anchors = torch.arange(n)
    f = torch.randn(n, d, generator=_gen(14))
    idx, has = pos.hard_positive(f, anchors, bank, mode)
    idx2, has2 = pos.hard_positive(f, anchors, bank, mode, similarities=f @ bank.t() / 0.1)
    assert torch.equal(idx, idx2) and torch.equal(has, has2)
    pick = min if mode == "least_similar" else max
    for i in range(n):
        mined = ref[i] - {i}
        assert bool(has[i]) == bool(mined)
        assert int(idx[i]) == (pick(mined, key=lambda j: float(f[i] @ bank[j])) if mined else i)
    with pytest.raises(ValueError, match="mode"):
        pos.hard_positive(f, anchors, bank, "hardest")


def test_pair_precision_against_loop():
    pos, ref = _random_sets(10, rounds=1, per_round=8, seed=15)
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1, 2, 0])
    pairs = [(a, b) for a in ref for b in ref[a] if a < b]
    expected = sum(int(labels[a] == labels[b]) for a, b in pairs) / len(pairs)
    assert abs(pos.pair_precision(labels) - expected) < 1e-12


def test_coverage_against_loop():
    pos, ref = _random_sets(12, rounds=1, per_round=4, seed=17)
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1, 2, 0, -1, 1])          # sample 10 unlabelled
    has = [bool(ref[i] - {i}) for i in range(12)]
    per_class = [sum(has[i] for i in range(12) if labels[i] == c) / sum(1 for i in range(12) if labels[i] == c)
                 for c in range(3)]
    cov = pos.coverage(labels)
    assert cov["pair_coverage"] == pytest.approx(sum(has) / 12)
    assert cov["pair_coverage_min_class"] == pytest.approx(min(per_class))
    assert PositiveSets(5).coverage(torch.zeros(5, dtype=torch.long)) == {"pair_coverage": 0.0,
                                                                         "pair_coverage_min_class": 0.0}
    assert PositiveSets(3).coverage(torch.full((3,), -1))["pair_coverage_min_class"] is None
    with pytest.raises(ValueError, match="one label per sample"):
        pos.coverage(labels[:5])


def test_state_dict_round_trip_weights_only():
    pos, ref = _random_sets(16, rounds=2, per_round=10, seed=16)
    buf = io.BytesIO()
    torch.save(pos.state_dict(), buf)
    buf.seek(0)
    fresh = PositiveSets(16)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh.indptr, pos.indptr) and torch.equal(fresh.indices, pos.indices)
    cand = torch.arange(16).repeat(16, 1)
    assert torch.equal(fresh.contains(torch.arange(16), cand), pos.contains(torch.arange(16), cand))
    assert fresh.add_pairs(torch.tensor([0]), torch.tensor([1])) == pos.add_pairs(torch.tensor([0]), torch.tensor([1]))
    state = pos.state_dict()
    with pytest.raises(RuntimeError, match="indptr"):
        PositiveSets(17).load_state_dict(state)
    broken = {"indptr": state["indptr"], "indices": state["indices"].flip(0)}
    with pytest.raises(ValueError, match="symmetric"):
        PositiveSets(16).load_state_dict(broken)


def test_bad_inputs():
    pos = PositiveSets(5)
    with pytest.raises(IndexError, match="anchors"):
        pos.add_pairs(torch.tensor([0]), torch.tensor([5]))
    with pytest.raises(ValueError, match="same length"):
        pos.add_pairs(torch.tensor([0, 1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="integer"):
        pos.degree(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="B x K"):
        pos.contains(torch.tensor([0, 1]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="num_samples"):
        PositiveSets(1)
