"""Triplet construction (isl/triplets.py) against a per-anchor loop over the same random draws."""
import pytest
import torch
import torch.nn.functional as F

from isl.positives import PositiveSets
from isl.triplets import build_triplets, triplet_indices


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _setup(n=30, d=5, seed=0):
    g = _gen(seed)
    pos = PositiveSets(n)
    pos.add_pairs(torch.randint(0, n, (25,), generator=g), torch.randint(0, n, (25,), generator=g))
    bank = F.normalize(torch.randn(n, d, generator=g), dim=1)
    return pos, bank


def _members(pos, i):
    return set(pos.padded(torch.tensor([i]))[0][0].tolist())


@pytest.mark.parametrize("source", ["mined", "self"])
def test_triplets_against_loop(source):
    pos, bank = _setup()
    anchors = torch.tensor([0, 4, 4, 29, 13, 7])
    feats = torch.randn(6, 5, generator=_gen(1))
    a, p, n = build_triplets(feats, anchors, bank, pos, num_candidates=9, generator=_gen(2),
                             positive_source=source)
    # the same draws, replayed: first the positive (only for "mined"), then the negatives
    g = _gen(2)
    pos_ref = pos.sample_positive(anchors, g) if source == "mined" else anchors
    cand = pos.sample_negatives(anchors, 9, g, shared=True)  # hardest_negative's default draw
    assert torch.equal(a, feats)
    for b, i in enumerate(anchors.tolist()):
        assert int(pos_ref[b]) in _members(pos, i)
        assert torch.equal(p[b], bank[pos_ref[b]])
        best = max(cand[b].tolist(), key=lambda j: float(feats[b] @ bank[j]))
        assert best not in _members(pos, i)
        assert torch.equal(n[b], bank[best])


def test_positive_is_drawn_from_mined_set():
    pos, bank = _setup(seed=3)
    anchors = torch.arange(30).repeat(40)
    p_idx, n_idx = triplet_indices(bank[anchors], anchors, bank, pos, num_candidates=4, generator=_gen(4))
    for i in range(30):
        assert set(p_idx[anchors == i].tolist()) == _members(pos, i)  # drawn from all of P_i
        assert not set(n_idx[anchors == i].tolist()) & _members(pos, i)


def test_bad_arguments():
    pos, bank = _setup()
    with pytest.raises(ValueError, match="positive_source"):
        build_triplets(bank[:2], torch.tensor([0, 1]), bank, pos, 4, positive_source="neighbour")
    with pytest.raises(ValueError, match="B x d"):
        build_triplets(bank[:3], torch.tensor([0, 1]), bank, pos, 4)
    with pytest.raises(ValueError, match="num_candidates"):
        build_triplets(bank[:2], torch.tensor([0, 1]), bank, pos, 0)
