"""NCA (top-K neighbourhood), Gaussian LDA and GaussianMetric of the Deep_metric family against loops
written like the source (github bnulihaixia/Deep_metric)."""
from __future__ import annotations

import math

import pytest
import torch

from baselines.deep_metric import DMNCALoss, GaussianLDALoss, GaussianMetricLoss

from deep_metric_reference import dist, rows, unit_batch

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4, 0])  # class 3 is a singleton


def batch(seed: int = 0, dim: int = 4) -> torch.Tensor:
    return unit_batch(len(LABELS), seed, dim)


def reference_nca(x, labels, alpha, k) -> float:
    losses = []
    for i, pos, neg in rows(labels):
        pos_pair = sorted(dist(x, i, p) for p in pos)
        neg_pair = [dist(x, i, n) for n in neg]
        pair = sorted(pos_pair + neg_pair)
        threshold = pair[k] if len(pair) > k else math.inf
        pos_neig = [d for d in pos_pair if d < threshold] or [pos_pair[0]]
        neg_neig = [d for d in neg_pair if d < threshold]
        pos_logit = sum(math.exp(alpha * (1 - d)) for d in pos_neig)
        neg_logit = sum(math.exp(alpha * (1 - d)) for d in neg_neig)
        losses.append(-math.log(pos_logit / (pos_logit + neg_logit)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("alpha,k", [(16.0, 32), (16.0, 3), (4.0, 1), (8.0, 6)])
def test_nca_matches_loop(alpha, k):
    x = batch(1)
    assert float(DMNCALoss(alpha=alpha, k=k)(x, LABELS)) == pytest.approx(reference_nca(x, LABELS, alpha, k),
                                                                          rel=1e-9)


def test_nca_falls_back_to_the_nearest_positive():
    # anchor 0: negatives at 0.1 and 0.2, its positive at 1.0. With k = 1 the threshold is the 2nd nearest
    # (0.2): the neighbourhood is {negative at 0.1}, no positive, so the nearest positive (1.0) is used.
    # anchor 1: distances 1.0 (positive 0), 0.9 and 1.02 (negatives); threshold 1.0 keeps the 0.9 negative
    # and no positive: again the nearest positive. Anchors 2 and 3 have no positive.
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.1, 0.0], [0.0, 0.2]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2])
    alpha = 2.0
    row0 = -math.log(math.exp(-alpha * 1.0) / (math.exp(-alpha * 1.0) + math.exp(-alpha * 0.1)))
    row1 = -math.log(math.exp(-alpha * 1.0) / (math.exp(-alpha * 1.0) + math.exp(-alpha * 0.9)))
    assert float(DMNCALoss(alpha=alpha, k=1)(x, labels)) == pytest.approx((row0 + row1) / 2, rel=1e-9)
    assert reference_nca(x, labels, alpha, 1) == pytest.approx((row0 + row1) / 2, rel=1e-9)


def reference_gaussian_lda(x, labels, alpha) -> float:
    losses = []
    for i, pos, neg in rows(labels):
        pos_logit = sum(math.exp(alpha * (1 - dist(x, i, p) ** 2)) for p in pos)
        neg_logit = sum(math.exp(alpha * (1 - dist(x, i, n) ** 2)) for n in neg)
        losses.append(-math.log(pos_logit / (pos_logit + neg_logit)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("alpha", [16.0, 1.0])
def test_gaussian_lda_matches_loop(alpha):
    x = batch(2)
    assert float(GaussianLDALoss(alpha=alpha)(x, LABELS)) == pytest.approx(reference_gaussian_lda(x, LABELS, alpha),
                                                                            rel=1e-7)


def reference_gaussian_metric(x, labels, fraction=0.2) -> float:
    n = len(labels)
    pos_dist = sorted(dist(x, i, j) for i in range(n) for j in range(n) if i != j and labels[i] == labels[j])
    neg_dist = sorted(dist(x, i, j) for i in range(n) for j in range(n) if labels[i] != labels[j])
    selected_num = int(len(pos_dist) * fraction + 1e-9)
    pos_dist, neg_dist = pos_dist[:selected_num], neg_dist[:selected_num]
    if not pos_dist or not neg_dist:
        return 0.0
    pos_point, neg_point = sum(pos_dist) / len(pos_dist), sum(neg_dist) / len(neg_dist)
    selected_pos = [d for d in pos_dist if d > neg_point]
    selected_neg = [d for d in neg_dist if d < pos_point]
    loss = sum(selected_pos) / len(selected_pos) if selected_pos else 0.0
    return loss - (sum(selected_neg) / len(selected_neg) if selected_neg else 0.0)


@pytest.mark.parametrize("seed,fraction", [(3, 0.2), (4, 0.2), (5, 0.5), (6, 1.0)])
def test_gaussian_metric_matches_loop(seed, fraction):
    x = batch(seed)
    got = float(GaussianMetricLoss(select_fraction=fraction)(x, LABELS))
    assert got == pytest.approx(reference_gaussian_metric(x, LABELS, fraction), rel=1e-9, abs=1e-12)


def test_gaussian_metric_with_too_few_positive_pairs_is_zero():
    x = batch(7)[:4].requires_grad_()
    loss = GaussianMetricLoss()(x, torch.tensor([0, 0, 1, 2]))  # 2 ordered positive pairs: 2 // 5 = 0
    assert float(loss.detach()) == 0
    (grad,) = torch.autograd.grad(loss, x)
    assert (grad == 0).all()
    with pytest.raises(ValueError, match="select_fraction"):
        GaussianMetricLoss(select_fraction=0.0)
