"""The document's easy / hard / semi-hard negative-mining rules (document 002, section 1) against a loop over
every triplet, and the miners composing with the losses."""
from __future__ import annotations

import math

import pytest
import torch

from baselines.miners import MINERS, build_miner
from baselines.registry import build_loss


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = torch.arange(3).repeat_interleave(4)
    return x, y


def loop_rule(x, y, rule, eps):
    f = [[v / math.sqrt(sum(t * t for t in r)) for v in r] for r in x.tolist()]
    d = lambda i, j: math.dist(f[i], f[j])  # noqa: E731
    y = y.tolist()
    out = set()
    for a in range(len(y)):
        for p in range(len(y)):
            for n in range(len(y)):
                if a == p or y[a] != y[p] or y[n] == y[a]:
                    continue
                ap, an = d(a, p), d(a, n)
                keep = {"easy": an > ap + eps, "hard": an <= ap, "semihard": ap < an <= ap + eps}[rule]
                if keep:
                    out.add((a, p, n))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rule", ["easy", "hard", "semihard"])
def test_triplet_rules_match_the_document(rule, seed):
    x, y = batch(seed)
    a, p, n = build_miner(rule, margin=0.3)(x, y)
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    expected = loop_rule(x, y, rule, 0.3)
    assert got == expected
    assert expected  # the batch exercises the rule


def test_rules_partition_all_triplets():
    x, y = batch(0)
    parts = [loop_rule(x, y, r, 0.3) for r in ("easy", "hard", "semihard")]
    total = sum(len(p) for p in parts)
    assert total == 12 * 3 * 8  # anchors x positives x negatives
    assert not (parts[0] & parts[1]) and not (parts[1] & parts[2]) and not (parts[0] & parts[2])


@pytest.mark.parametrize("miner", sorted(MINERS))
@pytest.mark.parametrize("loss", ["triplet", "contrastive", "multi_similarity", "lifted_structured"])
def test_miners_compose_with_losses(miner, loss):
    x, y = batch(1)
    x.requires_grad_(True)
    mined = build_miner(miner)(x, y)
    value = build_loss(loss)(x, y, mined)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_unknown_miner_and_none():
    assert build_miner(None) is None and build_miner("none") is None
    with pytest.raises(KeyError, match="semihard"):
        build_miner("semi_hard")
    with pytest.raises(ValueError, match="without a miner"):
        build_miner("none", margin=0.1)
