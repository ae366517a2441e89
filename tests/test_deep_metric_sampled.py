"""DistWeightContrastive, DistWeightNeighbour, BDW + DistWeightNeighbour and DistanceMatch (the losses that
draw negatives with the source's Gaussian probabilities) against per-anchor loops written like the source
(github bnulihaixia/Deep_metric), fed the same uniform draws as the vectorised code."""
from __future__ import annotations

import math

import pytest
import torch

from baselines.deep_metric import (BDWNeighbourLoss, DistanceMatchLoss, DistWeightContrastiveLoss,
                                   DistWeightNeighbourLoss)
from baselines.deep_metric.sampling import gaussian_logits, make_generator, sample_without_replacement

from deep_metric_reference import dist, rows, unit_batch

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4, 0, 2, 2])  # class 3 is a singleton


def batch(seed: int = 0, dim: int = 4) -> torch.Tensor:
    return unit_batch(len(LABELS), seed, dim)


def softplus(v: float) -> float:
    return math.log(1 + math.exp(v))


def gaussian_draw(values: dict, num: int, uniform_row, favour_tails: bool = True) -> list:
    """The source's multinomial(exp(+-(d - mean)^2 / (2 std^2)), num, replacement=False), as the same race."""
    mean = sum(values.values()) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values.values()) / len(values))
    sign = 1.0 if favour_tails else -1.0
    keys = {j: sign * ((v - mean) / std) ** 2 / 2 - math.log(-math.log(float(uniform_row[j])))
            for j, v in values.items()}
    return sorted(keys, key=lambda j: -keys[j])[:num]


def uniforms(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference_dw_contrastive(x, labels, seed, favour_tails, pos_limit=0.7, neg_limit=1.2) -> float:
    u = uniforms((len(labels), len(labels)), seed)
    losses = []
    for i, pos, neg in rows(labels):
        drawn = gaussian_draw({n: dist(x, i, n) for n in neg}, len(pos), u[i], favour_tails)
        pos_loss = sum(max(0.0, dist(x, i, p) - pos_limit) for p in pos) / len(pos)
        neg_loss = sum(max(0.0, neg_limit - dist(x, i, n)) for n in drawn) / len(drawn)
        losses.append(pos_loss + neg_loss)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed,favour_tails", [(0, True), (3, False)])
def test_dist_weight_contrastive_matches_loop(seed, favour_tails):
    x = batch(1)
    got = float(DistWeightContrastiveLoss(seed=seed, favour_tails=favour_tails)(x, LABELS))
    assert got == pytest.approx(reference_dw_contrastive(x, LABELS, seed, favour_tails), rel=1e-9)


def dwn_rows(x, labels, u, margin=1.0, num_pos=3):
    """Per-row DistWeightNeighbour of the source; u: B x B uniforms. Returns {anchor: loss}."""
    out = {}
    for i, pos, neg in rows(labels):
        pos_pair = sorted(dist(x, i, p) for p in pos)[:num_pos]
        drawn = gaussian_draw({n: dist(x, i, n) for n in neg}, len(pos), u[i])
        neg_pair = [dist(x, i, n) for n in drawn if dist(x, i, n) < pos_pair[-1] + 0.05]
        if not neg_pair:
            out[i] = 0.0
            continue
        pos_loss = 0.5 * sum(softplus(-2 * (margin - d)) for d in pos_pair) / len(pos_pair)
        neg_loss = 0.05 * sum(softplus(20 * (margin - d)) for d in neg_pair) / len(neg_pair)
        out[i] = pos_loss + neg_loss
    return out


@pytest.mark.parametrize("seed", [0, 5])
def test_dist_weight_neighbour_matches_loop(seed):
    x = batch(2)
    per_row = dwn_rows(x, LABELS, uniforms((len(LABELS), len(LABELS)), seed))
    got = float(DistWeightNeighbourLoss(seed=seed)(x, LABELS))
    assert got == pytest.approx(sum(per_row.values()) / len(per_row), rel=1e-9)


@pytest.mark.parametrize("normalize", [True, False])
def test_bdw_is_the_mean_of_dist_weight_neighbour_over_slices(normalize):
    x = batch(3, dim=8)
    num_slices, seed = 3, 4
    u = uniforms((num_slices, len(LABELS), len(LABELS)), seed)  # one draw for all slices
    per_slice = []
    for s, part in enumerate(torch.tensor_split(x, num_slices, dim=1)):
        if normalize:
            part = torch.stack([row / float(row.norm()) for row in part])
        per_row = dwn_rows(part, LABELS, u[s])
        per_slice.append(sum(per_row.values()) / len(per_row))
    got = float(BDWNeighbourLoss(num_slices=num_slices, normalize_slices=normalize, seed=seed)(x, LABELS))
    assert got == pytest.approx(sum(per_slice) / num_slices, rel=1e-9)


def reference_distance_match(x, labels, seed, margin=1.0) -> float:
    bases, muls = [0.95, 1.05, 1.12], [4, 8, 16]
    u = uniforms((len(labels), len(labels)), seed)
    losses = []
    for i, pos, neg in rows(labels):
        pos_pair = sorted(dist(x, i, p) for p in pos)[:3]
        num_instances = len(pos) + 1
        drawn = gaussian_draw({n: dist(x, i, n) for n in neg}, 3 * num_instances, u[i])
        neg_pair = [dist(x, i, n) for n in drawn if dist(x, i, n) < pos_pair[-1] + 0.05]
        if not neg_pair:
            losses.append(0.0)
            continue
        pos_loss = sum(1.0 / muls[k] * softplus(pos_pair[k] - bases[k]) for k in range(len(pos_pair))) / len(pos_pair)
        neg_loss = 0.02 * sum(softplus(50 * (margin - d)) for d in neg_pair) / len(neg_pair)
        losses.append(pos_loss + neg_loss)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", [0, 9])
def test_distance_match_matches_loop(seed):
    x = batch(4)
    got = float(DistanceMatchLoss(seed=seed)(x, LABELS))
    assert got == pytest.approx(reference_distance_match(x, LABELS, seed), rel=1e-9)


def test_distance_match_draws_three_per_instance_capped_at_the_negatives():
    # 2 classes of 3: each anchor has 3 negatives and would draw 3 * 3 = 9: all 3 are taken, so the
    # loss is deterministic whatever the seed
    x = batch(5)[:6]
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    values = {float(DistanceMatchLoss(seed=s)(x, labels)) for s in range(4)}
    assert len(values) == 1
    assert values.pop() == pytest.approx(reference_distance_match(x, labels, 0), rel=1e-9)


def test_gaussian_rule_draw_frequencies():
    # one row of negative distances, 20k independent single draws: frequencies follow exp(+z^2 / 2)
    # normalised (the source's rule), or exp(-z^2 / 2) with favour_tails=False
    values = torch.tensor([0.9, 1.0, 1.0, 1.1, 1.6], dtype=torch.float64)
    mask = torch.ones(5, dtype=torch.bool)
    z2 = ((values - values.mean()) / values.std(unbiased=False)).pow(2)
    for favour_tails, sign in [(True, 1.0), (False, -1.0)]:
        logits = gaussian_logits(values.expand(20000, 5), mask.expand(20000, 5), favour_tails)
        freq = sample_without_replacement(logits, mask.expand(20000, 5), 1, make_generator(1)).double().mean(0)
        assert torch.allclose(freq, torch.softmax(sign * z2 / 2, 0), atol=0.012)
