"""Helpers of the Deep_metric losses: seeded masked sampling, the Gaussian rule, batch k-means, pair geometry."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from baselines.deep_metric.batch_kmeans import batch_kmeans
from baselines.deep_metric.pairs import (embedding_slices, masked_logsumexp, masked_max, masked_mean, masked_min,
                                         pair_masks, smallest_k)
from baselines.deep_metric.sampling import gaussian_logits, gumbel_keys, make_generator, sample_without_replacement


def reference_race(logits, mask, num, uniforms):
    """Per-row loop: the num[i] masked entries of row i with the largest logit + Gumbel(u)."""
    out = torch.zeros_like(mask)
    for i in range(mask.shape[0]):
        cand = [j for j in range(mask.shape[1]) if mask[i, j]]
        keys = {j: float(logits[i, j]) - math.log(-math.log(float(uniforms[i, j]))) for j in cand}
        for j in sorted(cand, key=lambda j: -keys[j])[: int(num[i])]:
            out[i, j] = True
    return out


def test_sampler_matches_per_row_race_with_the_same_draws():
    torch.manual_seed(0)
    logits = torch.randn(7, 9, dtype=torch.float64)
    mask = torch.rand(7, 9) < 0.6
    mask[3] = False  # an empty row selects nothing
    num = torch.tensor([1, 2, 3, 4, 9, 0, 2])
    got = sample_without_replacement(logits, mask, num, make_generator(5))
    uniforms = torch.rand(7, 9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(got, reference_race(logits, mask, num, uniforms))
    assert torch.equal(got.sum(1), torch.minimum(num, mask.sum(1)))  # capped at the row's candidates


def test_one_draw_follows_the_softmax_law():
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5], dtype=torch.float64)
    mask = torch.tensor([True, True, False, True, True])
    rows = 40000
    drawn = sample_without_replacement(logits.expand(rows, 5), mask.expand(rows, 5), 1, make_generator(1))
    freq = drawn.double().mean(0)
    expected = torch.softmax(logits.masked_fill(~mask, float("-inf")), 0)
    assert torch.allclose(freq, expected, atol=0.01)  # ~4 standard errors at 40k draws
    assert freq[2] == 0


def test_two_draws_without_replacement_follow_sequential_sampling():
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    rows = 40000
    drawn = sample_without_replacement(weights.log().expand(rows, 4), torch.ones(rows, 4, dtype=torch.bool), 2,
                                       make_generator(2))
    total = float(weights.sum())
    for a, b in itertools.combinations(range(4), 2):  # P({a, b}) = p_a p_b/(1-p_a) + p_b p_a/(1-p_b)
        pa, pb = float(weights[a]) / total, float(weights[b]) / total
        exact = pa * pb / (1 - pa) + pb * pa / (1 - pb)
        freq = float((drawn[:, a] & drawn[:, b]).double().mean())
        assert abs(freq - exact) < 0.012, (a, b, freq, exact)


def test_seed_reproduces_and_generator_advances():
    logits, mask = torch.zeros(4, 6), torch.ones(4, 6, dtype=torch.bool)
    gen_a, gen_b = make_generator(3), make_generator(3)
    first = sample_without_replacement(logits, mask, 2, gen_a)
    assert torch.equal(first, sample_without_replacement(logits, mask, 2, gen_b))
    later = [sample_without_replacement(logits, mask, 2, gen_a) for _ in range(5)]
    assert any(not torch.equal(first, x) for x in later)
    with pytest.raises(TypeError, match="seed"):
        make_generator(1.5)


def test_gaussian_logits_match_the_source_rule_per_row():
    torch.manual_seed(1)
    values = torch.rand(5, 8, dtype=torch.float64) * 2
    mask = torch.rand(5, 8) < 0.7
    mask[:, 0] = True
    got_tails = gaussian_logits(values, mask, favour_tails=True)
    got_density = gaussian_logits(values, mask, favour_tails=False)
    for i in range(5):
        row = [float(values[i, j]) for j in range(8) if mask[i, j]]
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / len(row))
        for j in range(8):
            if mask[i, j]:
                z2 = ((float(values[i, j]) - mean) / std) ** 2 if std > 0 else 0.0
                assert got_tails[i, j] == pytest.approx(z2 / 2, rel=1e-9, abs=1e-12)
                assert got_density[i, j] == pytest.approx(-z2 / 2, rel=1e-9, abs=1e-12)
    constant = gaussian_logits(torch.ones(2, 4), torch.ones(2, 4, dtype=torch.bool))
    assert torch.equal(constant, torch.zeros(2, 4))  # std 0: uniform, no NaN


def test_gumbel_keys_are_finite_at_the_ends_of_the_unit_interval():
    keys = gumbel_keys(torch.zeros(3), torch.tensor([0.0, 0.5, 1.0 - 2**-24]))
    assert torch.isfinite(keys).all()


def test_masked_reductions_on_empty_rows_give_zero_and_no_nan_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, False], [False] * 4, [True] * 4])
    lse, nonempty = masked_logsumexp(x, mask)
    assert nonempty.tolist() == [True, False, True]
    assert float(lse[0].detach()) == pytest.approx(float(torch.logsumexp(x.detach()[0, [0, 2]], 0)))
    assert float(lse[1].detach()) == 0
    total = lse.sum() + masked_mean(x, mask).sum() + masked_max(x, mask).sum() + masked_min(x, mask).sum()
    (grad,) = torch.autograd.grad(total, x)
    assert torch.isfinite(grad).all() and (grad[1] == 0).all()
    x = x.detach()
    assert masked_max(x, mask)[0] == max(x[0, 0], x[0, 2]) and masked_min(x, mask)[2] == x[2].min()


def test_smallest_k_returns_the_sorted_prefix_of_each_row():
    values = torch.tensor([[3.0, 1.0, 2.0, 0.5], [4.0, 3.0, 2.0, 1.0]])
    mask = torch.tensor([[True, True, True, False], [False, True, False, False]])
    got, keep = smallest_k(values, mask, 3)
    assert got[0].tolist() == [1.0, 2.0, 3.0] and keep[0].all()
    assert got[1, 0] == 3.0 and keep[1].tolist() == [True, False, False]


def test_pair_masks_from_labels_and_from_a_miners_tuple():
    labels = torch.tensor([0, 0, 1, 1, 1])
    pos, neg = pair_masks(labels)
    for i, j in itertools.product(range(5), range(5)):
        assert pos[i, j] == (labels[i] == labels[j] and i != j)
        assert neg[i, j] == (labels[i] != labels[j])
    anchors, positives, negatives = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([2, 0])
    pos_t, neg_t = pair_masks(labels, (anchors, positives, negatives))
    assert torch.equal(torch.nonzero(pos_t), torch.tensor([[0, 1], [2, 3]]))
    assert torch.equal(torch.nonzero(neg_t), torch.tensor([[0, 2], [2, 0]]))


def test_embedding_slices_follow_tensor_split_and_normalise():
    x = torch.randn(6, 11)
    got = embedding_slices(x, 3, normalize=False)
    for s, part in enumerate(torch.tensor_split(x, 3, dim=1)):
        assert torch.equal(got[s, :, : part.shape[1]], part)
        assert (got[s, :, part.shape[1]:] == 0).all()
    unit = embedding_slices(x, 3, normalize=True)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(3, 6))
    with pytest.raises(ValueError, match="num_slices"):
        embedding_slices(x, 12, normalize=False)


def test_batch_kmeans_finds_separated_blobs_and_is_seeded():
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = (centers.repeat_interleave(6, 0) + 0.1 * torch.randn(18, 2, generator=gen))
    truth = torch.arange(3).repeat_interleave(6)
    assign, found = batch_kmeans(points, 3, generator=make_generator(4))
    for a, b in itertools.product(range(18), range(18)):  # same partition as the blobs
        assert (assign[a] == assign[b]) == (truth[a] == truth[b])
    for k in range(3):  # centres are the member means, points sit with their nearest centre
        assert torch.allclose(found[k], points[assign == k].mean(0), atol=1e-5)
    nearest = torch.cdist(points, found).argmin(1)
    assert torch.equal(nearest, assign)
    again, _ = batch_kmeans(points, 3, generator=make_generator(4))
    assert torch.equal(assign, again)


def test_batch_kmeans_degenerate_inputs():
    assign, centers = batch_kmeans(torch.ones(5, 3), 4, generator=make_generator(0))  # duplicates
    assert torch.isfinite(centers).all() and assign.shape == (5,)
    assign, centers = batch_kmeans(torch.randn(3, 2), 10, generator=make_generator(0))  # k > N
    assert centers.shape == (3, 2) and sorted(assign.tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="num_clusters"):
        batch_kmeans(torch.randn(3, 2), 0)
