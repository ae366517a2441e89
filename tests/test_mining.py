"""Mining (isl/mining.py) against brute-force loops over anchors, proxies and bank entries."""
import math

import pytest
import torch
import torch.nn.functional as F

from isl.mining import mine_gan, mine_knn
from isl.positives import PositiveSets
from isl.triplets import triplet_indices
from mining_helpers import mining_setup


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _brute_force_gan(anchors, bank, pos, G, D, radius, threshold, n_proxies, topk, radius_mode, base, k, seed,
                     source, exclude_existing):
    """Loop over anchors, proxies and bank entries, replaying the documented order of random draws."""
    gen = _gen(seed)
    p_idx, n_idx = triplet_indices(bank[anchors], anchors, bank, pos, k, gen, source)
    z = G.sample_noise(len(anchors) * n_proxies, gen)
    pairs, scores = [], []
    for c, i in enumerate(anchors.tolist()):
        a, p, n = bank[i][None], bank[p_idx[c]][None], bank[n_idx[c]][None]
        best_g, best_s = None, -1.0
        for q in range(n_proxies):
            g = G(a, p, n, z[c * n_proxies + q][None])[0]
            s = 1.0 / (1.0 + math.exp(-float(D(a, g[None], n))))
            if s > best_s:
                best_g, best_s = g, s
        scores.append(best_s)
        if best_s <= threshold:
            continue
        members = set(pos.padded(torch.tensor([i]))[0][0].tolist())
        found = []
        for j in range(bank.shape[0]):
            dist = math.sqrt(sum((float(best_g[t]) - float(bank[j, t])) ** 2 for t in range(bank.shape[1])))
            if radius_mode == "fixed":
                inside = dist < radius
            else:
                inside = float(best_g @ bank[j]) > base + (1 - best_s) * (1 - base)
            if j != i and inside:
                found.append((dist, j))
        found.sort()
        if topk:
            found = found[:topk]
        pairs += [(i, j) for _, j in found if not (exclude_existing and j in members)]
    return sorted(pairs), scores


@pytest.mark.parametrize("radius_mode,topk,source,exclude", [("fixed", None, "mined", True),
                                                             ("fixed", 3, "self", False),
                                                             ("adaptive_cosine", 2, "mined", True)])
def test_mine_gan_against_brute_force(radius_mode, topk, source, exclude):
    bank, pos, G, D = mining_setup()
    anchors = torch.arange(40)
    kw = dict(radius=1.0, n_proxies=3, topk=topk, radius_mode=radius_mode, adaptive_base=0.3, num_candidates=6,
              chunk_size=40, positive_source=source, exclude_existing=exclude, backend="torch")
    probe = mine_gan(anchors, bank, pos, G, D, threshold=0.5, generator=_gen(7), **kw)
    ordered = probe.scores.sort().values
    h = float(ordered[19] + ordered[20]) / 2  # half of the anchors pass
    res = mine_gan(anchors, bank, pos, G, D, threshold=h, generator=_gen(7), **kw)
    pairs, scores = _brute_force_gan(anchors, bank, pos, G, D, 1.0, h, 3, topk, radius_mode, 0.3, 6, 7, source,
                                     exclude)
    torch.testing.assert_close(res.scores, torch.tensor(scores, dtype=torch.float32))
    assert 0 < res.num_accepted_anchors < 40 and res.num_accepted_anchors == sum(s > h for s in scores)
    assert len(pairs) > 0
    assert sorted(zip(res.pairs_i.tolist(), res.pairs_j.tolist())) == pairs


def test_mine_gan_chunking_and_faiss_agree():
    bank, pos, G, D = mining_setup(seed=1, noise_dim=0)
    # deterministic G, p = the anchor's own row and K >> N: the hardest negative is the true hardest one
    kw = dict(radius=0.9, threshold=0.01, n_proxies=1, topk=4, num_candidates=3000, positive_source="self")
    one = mine_gan(torch.arange(40), bank, pos, G, D, chunk_size=40, backend="torch", generator=_gen(0), **kw)
    many = mine_gan(torch.arange(40), bank, pos, G, D, chunk_size=7, backend="faiss", generator=_gen(1), **kw)
    key = lambda r: sorted(zip(r.pairs_i.tolist(), r.pairs_j.tolist()))
    assert key(one) == key(many) and len(key(one)) > 0
    assert not pos.contains(one.pairs_i, one.pairs_j[:, None]).any()  # exclude_existing: only new pairs
    assert pos.add_pairs(one.pairs_i, one.pairs_j) > 0


def test_anchor_whose_set_is_everything_is_skipped():
    bank, pos, G, D = mining_setup(n=10, seed=3)
    pos.add_pairs(torch.zeros(9, dtype=torch.long), torch.arange(1, 10))
    res = mine_gan(torch.arange(10), bank, pos, G, D, radius=1.0, threshold=0.01, n_proxies=2, generator=_gen(0))
    assert math.isnan(float(res.scores[0])) and not bool(res.accepted[0]) and 0 not in res.pairs_i.tolist()
    assert not torch.isnan(res.scores[1:]).any()


@pytest.mark.parametrize("topk", [None, 2])
def test_mine_knn_against_brute_force(topk):
    bank, pos, _, _ = mining_setup(seed=2)
    res = mine_knn(torch.arange(40), bank, pos, radius=0.8, topk=topk, chunk_size=9, backend="torch")
    expected = []
    for i in range(40):
        members = set(pos.padded(torch.tensor([i]))[0][0].tolist())
        found = sorted((float((bank[i] - bank[j]).norm()), j) for j in range(40) if j != i
                       and float((bank[i] - bank[j]).norm()) < 0.8)
        found = found[:topk] if topk else found
        expected += [(i, j) for _, j in found if j not in members]
    assert len(expected) > 0
    assert sorted(zip(res.pairs_i.tolist(), res.pairs_j.tolist())) == sorted(expected)
    assert res.num_capped == 0 and res.scores is None


def test_capped_search_is_reported():
    bank = F.normalize(torch.ones(10, 3) + 1e-3 * torch.randn(10, 3, generator=_gen(0)), dim=1)
    res = mine_knn(torch.arange(10), bank, PositiveSets(10), radius=0.5, max_neighbors=3, backend="torch")
    assert res.num_capped == 10 and res.pairs_i.numel() == 30


def test_bad_arguments():
    bank, pos, G, D = mining_setup()
    anchors = torch.arange(4)
    base = dict(radius=0.5, threshold=0.5, n_proxies=2)
    for bad, match in [(dict(radius=0.0), "radius"), (dict(radius=2.5), "radius"), (dict(threshold=0.0), "threshold"),
                       (dict(threshold=1.0), "threshold"), (dict(n_proxies=0), "n_proxies"),
                       (dict(radius_mode="ball"), "radius_mode"), (dict(topk=0), "topk")]:
        with pytest.raises(ValueError, match=match):
            mine_gan(anchors, bank, pos, G, D, **{**base, **bad})
    with pytest.raises(ValueError, match="radius"):
        mine_knn(anchors, bank, pos, radius=-1.0)
    with pytest.raises(ValueError, match="rows"):
        mine_knn(anchors, bank[:10], pos, radius=0.5)
