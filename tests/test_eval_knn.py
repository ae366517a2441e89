"""Weighted kNN (isl.eval.knn) against a per-sample Python loop over the formula of Wu et al. 2018."""
import logging
import math

import pytest
import torch

from isl.eval.knn import weighted_knn_accuracy, weighted_knn_predict
from isl.neighbors import faiss_available

BACKENDS = ["torch"] + (["faiss"] if faiss_available() else [])


def loop_reference(bank, labels, queries, k, temperature):
    """For each query: cosine to every bank row, k largest, vote exp(s / tau) per class, largest vote wins
    (lowest class on a tie). Plain Python over samples, float64."""
    bank = [[float(v) for v in row] for row in bank]
    labels = [int(v) for v in labels]
    preds = []
    for q in queries.tolist():
        qn = math.sqrt(sum(v * v for v in q))
        sims = []
        for j, b in enumerate(bank):
            bn = math.sqrt(sum(v * v for v in b))
            sims.append((sum(x * y for x, y in zip(q, b)) / (qn * bn), j))
        sims.sort(key=lambda t: -t[0])
        votes = {}
        for s, j in sims[:k]:
            votes[labels[j]] = votes.get(labels[j], 0.0) + math.exp(s / temperature)
        best = max(votes.values())
        preds.append(min(c for c, v in votes.items() if v == best))
    return torch.tensor(preds)


def make_problem(seed, n=60, q=25, d=6, classes=4):
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(n, d, generator=g) * (0.5 + torch.rand(n, 1, generator=g))  # not unit: must be normalised
    labels = torch.randint(0, classes, (n,), generator=g)
    queries = torch.randn(q, d, generator=g) * 3.0
    return bank, labels, queries


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,k,temperature", [(0, 1, 0.1), (1, 5, 0.1), (2, 17, 0.5), (3, 60, 0.05),
                                                 (4, 9, 1.0)])
def test_matches_loop_reference(backend, seed, k, temperature):
    bank, labels, queries = make_problem(seed)
    expected = loop_reference(bank, labels, queries, k, temperature)
    got = weighted_knn_predict(bank, labels, queries, k=k, temperature=temperature, backend=backend)
    assert got.dtype == torch.int64 and got.shape == (queries.shape[0],)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunking_does_not_change_predictions(backend):
    bank, labels, queries = make_problem(5, n=80, q=37)
    whole = weighted_knn_predict(bank, labels, queries, k=11, backend=backend, chunk_size=4096)
    chunked = weighted_knn_predict(bank, labels, queries, k=11, backend=backend, chunk_size=4)
    assert torch.equal(whole, chunked)


def test_small_temperature_does_not_overflow():
    # exp(1 / 0.005) = e^200 overflows float32 (max ~e^88) but not the float64 loop reference.
    bank, labels, queries = make_problem(6)
    for backend in BACKENDS:
        got = weighted_knn_predict(bank, labels, queries, k=7, temperature=0.005, backend=backend)
        assert torch.equal(got, loop_reference(bank, labels, queries, 7, 0.005))


def test_weights_matter_against_plain_majority():
    # One very close neighbour of class 1 against two far ones of class 0: a plain majority says 0, the
    # exp(s / tau) vote with small tau says 1, with large tau says 0.
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.2]])
    assert weighted_knn_predict(bank, labels, query, k=3, temperature=0.1).item() == 1
    assert weighted_knn_predict(bank, labels, query, k=3, temperature=100.0).item() == 0


def test_k_larger_than_bank_is_clipped_with_warning(caplog):
    bank, labels, queries = make_problem(7, n=12)
    with caplog.at_level(logging.WARNING, logger="isl.eval.knn"):
        got = weighted_knn_predict(bank, labels, queries, k=500, backend="torch")
    assert "exceeds the bank size" in caplog.text
    assert torch.equal(got, loop_reference(bank, labels, queries, 12, 0.1))


def test_accuracy_is_fraction_correct_and_num_classes_pads():
    bank, labels, queries = make_problem(8)
    query_labels = torch.randint(0, 4, (queries.shape[0],), generator=torch.Generator().manual_seed(1))
    preds = loop_reference(bank, labels, queries, 5, 0.1)
    acc = weighted_knn_accuracy(bank, labels, queries, query_labels, k=5, num_classes=10)
    assert acc == pytest.approx((preds == query_labels).double().mean().item(), abs=1e-12)
    assert 0.0 < acc < 1.0  # a mixture of right and wrong, so the comparison above means something


def test_bad_inputs_raise():
    bank, labels, queries = make_problem(9)
    with pytest.raises(ValueError, match="same encoder"):
        weighted_knn_predict(bank, labels, queries[:, :3])
    with pytest.raises(ValueError, match="negative"):
        weighted_knn_predict(bank, torch.where(labels == 0, -1, labels), queries)
    with pytest.raises(ValueError, match="vector of N"):
        weighted_knn_predict(bank, labels[:-1], queries)
    with pytest.raises(ValueError, match="temperature"):
        weighted_knn_predict(bank, labels, queries, temperature=0.0)
    with pytest.raises(ValueError, match="k=0"):
        weighted_knn_predict(bank, labels, queries, k=0)
    with pytest.raises(ValueError, match="num_classes"):
        weighted_knn_predict(bank, labels, queries, num_classes=2)
    with pytest.raises(ValueError, match="integer"):
        weighted_knn_predict(bank, labels.float(), queries)
    with pytest.raises(ValueError, match="backend"):
        weighted_knn_predict(bank, labels, queries, backend="annoy")
    with pytest.raises(ValueError, match="query_labels"):
        weighted_knn_accuracy(bank, labels, queries, labels)
