"""BinDeviance (branch), Contrastive and DistWeight of the Deep_metric family, on inner products, against
per-anchor loops written like the source (github bnulihaixia/Deep_metric), with the same random draws."""
from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.reducers import DoNothingReducer

from baselines.deep_metric import BinDevianceBranchLoss, DistWeightLoss, DMContrastiveLoss

from deep_metric_reference import rows, sim, unit_batch

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4, 0])  # class 3 is a singleton


def batch(seed: int = 0, dim: int = 6) -> torch.Tensor:
    return unit_batch(len(LABELS), seed, dim)


def softplus(v: float) -> float:
    return math.log(1 + math.exp(v))


def reference_bin_deviance(x, labels, margin, num_branches, normalize) -> float:
    per_branch = []
    for part in torch.tensor_split(x, num_branches, dim=1):
        if normalize:
            part = torch.stack([row / max(float(row.norm()), 1e-12) for row in part])
        losses = []
        for i, pos, neg in rows(labels):
            pos_pair = sorted(sim(part, i, p) for p in pos)
            neg_pair = [s for s in (sim(part, i, n) for n in neg) if s > pos_pair[0] - 0.05]
            if not neg_pair:
                losses.append(0.0)
                continue
            pos_loss = sum(softplus(-2 * (s - margin)) for s in pos_pair) / len(pos_pair)
            neg_loss = 0.04 * sum(softplus(50 * (s - margin)) for s in neg_pair) / len(neg_pair)
            losses.append(pos_loss + neg_loss)
        per_branch.append(sum(losses) / len(losses))
    return sum(per_branch) / len(per_branch)


@pytest.mark.parametrize("num_branches,normalize", [(3, True), (3, False), (1, False), (2, True)])
def test_bin_deviance_branch_matches_loop(num_branches, normalize):
    x = batch(1, dim=7)
    loss = BinDevianceBranchLoss(num_branches=num_branches, normalize_branches=normalize)
    expected = reference_bin_deviance(x, LABELS, 0.5, num_branches, normalize)
    assert float(loss(x, LABELS)) == pytest.approx(expected, rel=1e-9)


def test_bin_deviance_row_without_hard_negative_contributes_zero():
    # two tight classes far apart: no negative passes s_min - 0.05, every row is 0 (and counted)
    x = torch.tensor([[1.0, 0.0], [0.99, 0.14], [-1.0, 0.0], [-0.99, -0.14]], dtype=torch.float64)
    loss = BinDevianceBranchLoss(num_branches=1, normalize_branches=False)(x, torch.tensor([0, 0, 1, 1]))
    assert float(loss) == 0


def reference_contrastive(x, labels, margin) -> float:
    losses = []
    for i, pos, neg in rows(labels):
        pos_loss = sum(1 - sim(x, i, p) for p in pos)
        neg_loss = sum(s for s in (sim(x, i, n) for n in neg) if s > margin)
        losses.append(pos_loss + neg_loss)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("margin", [0.5, 0.0])
def test_contrastive_matches_loop(margin):
    x = batch(2)
    got = float(DMContrastiveLoss(margin=margin)(x, LABELS))
    assert got == pytest.approx(reference_contrastive(x, LABELS, margin), rel=1e-9)


def reference_dist_weight(x, labels, scale, margin, seed) -> float:
    n = len(labels)
    uniforms = torch.rand(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    losses = []
    for i, pos, neg in rows(labels):
        keys = {p: scale * sim(x, i, p) - math.log(-math.log(float(uniforms[i, p]))) for p in pos}
        pos_min = sim(x, i, max(pos, key=keys.get))  # the source's multinomial(exp(5 s), 1), same draw
        neg_pair = [s for s in (sim(x, i, m) for m in neg) if s > pos_min - margin]
        losses.append(sum(neg_pair) / len(neg_pair) - pos_min + margin if neg_pair else 0.0)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", [0, 7])
def test_dist_weight_matches_loop_with_the_same_draws(seed):
    x = batch(3)
    got = float(DistWeightLoss(seed=seed)(x, LABELS))
    assert got == pytest.approx(reference_dist_weight(x, LABELS, 5.0, 0.01, seed), rel=1e-9)


def test_dist_weight_positive_draw_follows_exp_5s():
    # anchor 0 with positives at similarities 0.9, 0.5, -0.2 and one far negative; the drawn positive is
    # read back from the loss: loss = mean(neg above s_p - 0.01) - s_p + 0.01 with s(0, neg) = 0.95
    x = torch.tensor([[1.0, 0.0], [0.9, math.sqrt(1 - 0.81)], [0.5, math.sqrt(0.75)], [-0.2, math.sqrt(0.96)],
                      [0.95, -math.sqrt(1 - 0.9025)]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 0, 1])
    loss = DistWeightLoss(generator=torch.Generator().manual_seed(11), reducer=DoNothingReducer())
    counts = {0.9: 0, 0.5: 0, -0.2: 0}
    draws = 3000
    for _ in range(draws):
        per_row = loss(x, labels)["loss"]
        row0 = float(per_row["losses"][per_row["indices"] == 0])
        counts[min(counts, key=lambda s: abs((0.95 - s + 0.01) - row0))] += 1
    weights = {s: math.exp(5 * s) for s in counts}
    total = sum(weights.values())
    for s, c in counts.items():
        assert c / draws == pytest.approx(weights[s] / total, abs=0.03)
