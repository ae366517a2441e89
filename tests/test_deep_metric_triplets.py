"""BatchAll, A_BatchAll, A_hard_pair, Triplet, A_triplet and BatchHard of the Deep_metric family against
per-anchor loops written like the source (github bnulihaixia/Deep_metric), on uneven classes."""
from __future__ import annotations

import math

import pytest
import torch

from baselines.deep_metric import (ABatchAllLoss, AHardPairLoss, ATripletLoss, BatchAllLoss, BatchHardLoss,
                                   DMTripletLoss)

from deep_metric_reference import dist as d, rows, unit_batch

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4, 0])  # class 3 is a singleton: no positive


def batch(seed: int = 0, dim: int = 4) -> torch.Tensor:
    return unit_batch(len(LABELS), seed, dim)


def a_lr(x, i, pos, neg, alpha) -> float:
    pos_logit = sum(math.exp(alpha * (1 - d(x, i, p))) for p in pos)
    neg_logit = sum(math.exp(alpha * (1 - d(x, i, n))) for n in neg)
    return 1 - pos_logit / (pos_logit + neg_logit)


def reference_batch_all(x, labels, margin, alpha=None) -> float:
    total, count = 0.0, 0
    for i, pos, neg in rows(labels):
        weight = 1.0 if alpha is None else a_lr(x, i, pos, neg, alpha)
        for p in pos:
            for n in neg:
                t = d(x, i, p) - d(x, i, n) + margin
                if t > 0:
                    total, count = total + weight * t, count + 1
    return total / count if count else 0.0


def reference_triplet(x, labels, beta, threshold, alpha=None) -> float:
    total, count = 0.0, 0
    for i, pos, neg in rows(labels):
        weight = 1.0 if alpha is None else a_lr(x, i, pos, neg, alpha)
        for p in pos:
            for n in neg:
                t = math.log(math.exp(beta * (d(x, i, p) - d(x, i, n))) + 1)
                if t > threshold:
                    total, count = total + weight * t, count + 1
    return total / count if count else 0.0


def reference_hard_pair(x, labels, alpha, beta, pos_limit, neg_limit) -> float:
    losses = []
    for i, pos, neg in rows(labels):
        pos_loss = math.log(sum(math.exp(beta * (d(x, i, p) - pos_limit)) for p in pos))
        neg_loss = math.log(sum(math.exp(beta * (neg_limit - d(x, i, n))) for n in neg))
        losses.append(a_lr(x, i, pos, neg, alpha) * (pos_loss + neg_loss))
    return sum(losses) / len(losses)


def reference_batch_hard(x, labels, margin) -> float:
    losses = [max(0.0, max(d(x, i, p) for p in pos) - min(d(x, i, n) for n in neg) + margin)
              for i, pos, neg in rows(labels)]
    return sum(losses) / len(losses)


@pytest.mark.parametrize("margin", [0.02, 0.3])
def test_batch_all_matches_loop(margin):
    x = batch(1)
    assert float(BatchAllLoss(margin=margin)(x, LABELS)) == pytest.approx(reference_batch_all(x, LABELS, margin),
                                                                           rel=1e-9)


@pytest.mark.parametrize("alpha", [40.0, 5.0])
def test_a_batch_all_matches_loop(alpha):
    x = batch(2)
    got = float(ABatchAllLoss(margin=0.1, alpha=alpha)(x, LABELS))
    assert got == pytest.approx(reference_batch_all(x, LABELS, 0.1, alpha), rel=1e-9)
    assert got < float(BatchAllLoss(margin=0.1)(x, LABELS))  # a_lr < 1 shrinks every kept triplet


def test_a_factor_takes_no_gradient():
    x = batch(3).requires_grad_()
    loss = ABatchAllLoss(margin=0.1, alpha=5.0)(x, LABELS)
    (grad,) = torch.autograd.grad(loss, x)
    # the same loss with a_lr frozen as constants by the loop has the same gradient
    frozen = {i: a_lr(x.detach(), i, pos, neg, 5.0) for i, pos, neg in rows(LABELS)}
    dist = torch.cdist(x, x)
    terms = [frozen[i] * (dist[i, p] - dist[i, n] + 0.1) for i, pos, neg in rows(LABELS) for p in pos for n in neg
             if float(dist[i, p].detach() - dist[i, n].detach()) + 0.1 > 0]
    (expected,) = torch.autograd.grad(torch.stack(terms).mean(), x)
    assert torch.allclose(grad, expected, atol=1e-6)


@pytest.mark.parametrize("alpha,beta", [(40.0, 20.0), (10.0, 3.0)])
def test_a_hard_pair_matches_loop(alpha, beta):
    x = batch(4)
    got = float(AHardPairLoss(alpha=alpha, beta=beta)(x, LABELS))
    assert got == pytest.approx(reference_hard_pair(x, LABELS, alpha, beta, 0.8, 1.1), rel=1e-9)


@pytest.mark.parametrize("beta", [20.0, 2.0])
def test_triplet_and_a_triplet_match_loop(beta):
    x = batch(5)
    got = float(DMTripletLoss(beta=beta)(x, LABELS))
    assert got == pytest.approx(reference_triplet(x, LABELS, beta, 0.65), rel=1e-9)
    got_a = float(ATripletLoss(beta=beta, alpha=40.0)(x, LABELS))
    assert got_a == pytest.approx(reference_triplet(x, LABELS, beta, 0.65, alpha=40.0), rel=1e-9)


def test_triplet_mask_keeps_only_nearly_violated_triplets():
    # anchor 0, positive 1 at distance 0.1, negative 2 at distance 1: softplus(20 * -0.9) ~ 0 < 0.65
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    loss = DMTripletLoss()(x, labels)  # the anchor 1 triplet (d+ 0.1, d- 0.9) is not kept either
    assert float(loss.detach()) == 0
    (grad,) = torch.autograd.grad(loss, x)
    assert (grad == 0).all()


@pytest.mark.parametrize("margin", [1.0, 0.2])
def test_batch_hard_matches_loop(margin):
    x = batch(6)
    got = float(BatchHardLoss(margin=margin)(x, LABELS))
    assert got == pytest.approx(reference_batch_hard(x, LABELS, margin), rel=1e-9)


def test_batch_all_counts_only_violating_triplets():
    # one anchor pair far apart and a close negative: exactly the triplets with t > 0 are averaged
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.2, 0.0], [5.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2])
    # anchor 0: (p=1, n=2) t = 1 - 0.2 + 0.02 = 0.82; (p=1, n=3) t < 0. anchor 1: (p=0, n=2) 1 - 0.8 + 0.02 = 0.22
    assert float(BatchAllLoss()(x, labels)) == pytest.approx((0.82 + 0.22) / 2, rel=1e-9)
