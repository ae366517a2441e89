"""Center, CenterNCA, CenterPair and ClusterNCA of the Deep_metric family against loops over classes and
samples written like the source (github bnulihaixia/Deep_metric)."""
from __future__ import annotations

import math

import pytest
import torch

from baselines.deep_metric import CenterNCALoss, CenterPairLoss, ClusterNCALoss, DMCenterLoss

from deep_metric_reference import unit_batch

LABELS = torch.tensor([3, 3, 3, 1, 1, 7, 7, 7, 7, 5, 0, 0, 3])  # unsorted label values, class 5 a singleton


def batch(seed: int = 0, dim: int = 4) -> torch.Tensor:
    return unit_batch(len(LABELS), seed, dim)


def centers_by_loop(x, labels):
    classes = sorted(set(labels.tolist()))
    members = {c: [i for i in range(len(labels)) if int(labels[i]) == c] for c in classes}
    return classes, members, {c: sum(x[i] for i in members[c]) / len(members[c]) for c in classes}


def norm(v) -> float:
    return math.sqrt(max(float((v ** 2).sum()), 1e-12))


def reference_center(x, labels, an_margin, ap_margin) -> float:
    classes, members, mu = centers_by_loop(x, labels)
    losses = []
    for c in classes:
        d_an = min(norm(mu[c] - mu[o]) for o in classes if o != c)
        d_ap = max(norm(x[i] - mu[c]) for i in members[c])
        losses.append(max(0.0, an_margin - d_an) + max(0.0, d_ap - ap_margin))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("an_margin,ap_margin", [(0.7, 0.3), (2.0, 0.0), (0.0, 0.3)])
def test_center_matches_loop(an_margin, ap_margin):
    x = batch(1)
    got = float(DMCenterLoss(an_margin=an_margin, ap_margin=ap_margin)(x, LABELS))
    assert got == pytest.approx(reference_center(x, LABELS, an_margin, ap_margin), rel=1e-9)


def test_center_hinges_push_centres_apart_and_pull_members_in():
    x = batch(2).requires_grad_()
    loss = DMCenterLoss(an_margin=2.0, ap_margin=0.0)
    before = float(loss(x.detach(), LABELS))
    (grad,) = torch.autograd.grad(loss(x, LABELS), x)
    after = float(loss((x - 0.01 * grad).detach(), LABELS))
    assert after < before


def reference_center_nca(x, labels, alpha) -> float:
    classes, members, mu = centers_by_loop(x, labels)
    losses = []
    for i in range(len(labels)):
        sq = {c: float(((x[i] - mu[c]) ** 2).sum()) for c in classes}
        losses.append(-math.log(math.exp(-alpha * sq[int(labels[i])]) / sum(math.exp(-alpha * v) for v in sq.values())))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("alpha", [16.0, 2.0])
def test_center_nca_matches_loop(alpha):
    x = batch(3)
    assert float(CenterNCALoss(alpha=alpha)(x, LABELS)) == pytest.approx(reference_center_nca(x, LABELS, alpha),
                                                                          rel=1e-9)


def test_center_nca_centres_take_no_gradient():
    x = batch(4).requires_grad_()
    (grad,) = torch.autograd.grad(CenterNCALoss(alpha=3.0)(x, LABELS), x)
    _, members, mu = centers_by_loop(x.detach(), LABELS)
    centers = torch.stack([mu[c] for c in sorted(mu)])
    target = torch.tensor([sorted(mu).index(int(c)) for c in LABELS])
    expected_loss = torch.nn.functional.cross_entropy(-3.0 * torch.cdist(x, centers).pow(2), target)
    (expected,) = torch.autograd.grad(expected_loss, x)
    assert torch.allclose(grad, expected, atol=1e-9)


def reference_center_pair(x, labels, pos_floor, neg_cap, source_sign) -> float:
    classes, _, mu = centers_by_loop(x, labels)
    losses = []
    for i in range(len(labels)):
        own = int(labels[i])
        pos = max(norm(x[i] - mu[own]), pos_floor)
        log_sum = math.log(sum(math.exp(-min(norm(x[i] - mu[c]), neg_cap)) for c in classes if c != own))
        losses.append(pos - log_sum if source_sign else pos + log_sum)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("pos_floor,neg_cap", [(0.15, 0.6), (0.0, 10.0)])
@pytest.mark.parametrize("source_sign", [False, True])
def test_center_pair_matches_loop(pos_floor, neg_cap, source_sign):
    x = batch(5)
    got = float(CenterPairLoss(pos_floor=pos_floor, neg_cap=neg_cap, source_sign=source_sign)(x, LABELS))
    assert got == pytest.approx(reference_center_pair(x, LABELS, pos_floor, neg_cap, source_sign), rel=1e-9)


@pytest.mark.parametrize("source_sign,direction", [(False, 1.0), (True, -1.0)])
def test_center_pair_sign_decides_whether_other_centres_are_pushed_or_pulled(source_sign, direction):
    # two tight classes 0.3 apart (< neg_cap): a gradient step moves the centres apart by default and
    # together with the document's literal sign
    x = torch.tensor([[0.0, 0.0], [0.0, 0.02], [0.3, 0.0], [0.3, 0.02]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    (grad,) = torch.autograd.grad(CenterPairLoss(source_sign=source_sign)(x, labels), x)
    moved = (x - 0.1 * grad).detach()
    gap_change = float((moved[2:].mean(0) - moved[:2].mean(0)).norm()) - 0.3
    assert direction * gap_change > 0


def reference_cluster_nca(x, labels, group, alpha, min_dist) -> float:
    """The source's loop given the (class, cluster) split: leave-one-out scaling, > 1e-3 entries, NCA."""
    n = len(labels)
    split = [[i for i in range(n) if int(group[i]) == g] for g in sorted(set(group.tolist()))]
    centers = [sum(x[i] for i in s) / len(s) for s in split]
    cluster_mat = [[1.0] * len(split) for _ in range(n)]
    for g, s in enumerate(split):
        for k in s:
            if len(s) > 1:
                cluster_mat[k][g] = len(s) ** 2 / (len(s) - 1) ** 2
    losses = []
    for i in range(n):
        dist = [float(((x[i] - c) ** 2).sum()) * cluster_mat[i][g] for g, c in enumerate(centers)]
        same = [int(labels[split[g][0]]) == int(labels[i]) for g in range(len(split))]
        pos = [v for v, s in zip(dist, same) if s and v > min_dist]
        neg = [v for v, s in zip(dist, same) if not s and v > min_dist]
        if not pos or not neg:
            continue
        pos_exp = sum(math.exp(-alpha * v) for v in pos)
        losses.append(-math.log(pos_exp / (pos_exp + sum(math.exp(-alpha * v) for v in neg))))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("n_clusters", [32, 6, 3])
def test_cluster_nca_matches_loop_given_the_clusters(n_clusters):
    x = batch(6)
    loss = ClusterNCALoss(n_clusters=n_clusters, alpha=4.0, seed=3)
    group, _ = ClusterNCALoss(n_clusters=n_clusters, seed=3).groups(x, LABELS)  # the same seeded k-means
    assert float(loss(x, LABELS)) == pytest.approx(reference_cluster_nca(x, LABELS, group, 4.0, 1e-3), rel=1e-9)


def test_cluster_nca_groups_stay_inside_classes():
    x = batch(7)
    group, group_class = ClusterNCALoss(n_clusters=6, beta=10.0, seed=0).groups(x, LABELS)
    classes = torch.unique(LABELS, return_inverse=True)[1]
    assert torch.equal(group_class[group], classes)  # every group lies within one class
    assert len(set(group.tolist())) >= len(set(LABELS.tolist()))  # at least one group per class
    assert sorted(set(group.tolist())) == list(range(int(group.max()) + 1))  # dense ids


def test_cluster_nca_with_one_cluster_per_class_is_leave_one_out_nca():
    # with huge beta and as many clusters as classes, the groups are the classes and each sample sees
    # its own class centre with itself left out
    x = batch(8)
    num_classes = len(set(LABELS.tolist()))
    loss = ClusterNCALoss(n_clusters=num_classes, beta=100.0, alpha=2.0, seed=1)
    group = torch.unique(LABELS, return_inverse=True)[1]
    assert float(loss(x, LABELS)) == pytest.approx(reference_cluster_nca(x, LABELS, group, 2.0, 1e-3), rel=1e-9)
