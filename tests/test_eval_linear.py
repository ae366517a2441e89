"""The linear probe against scikit-learn's LogisticRegression, and its protocol (no test label chooses anything)."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from isl.eval import evaluate_embeddings
from isl.eval.linear import _standardise, stratified_split, fit_linear, linear_probe


def _blobs(n, d=6, c=3, seed=0, noise=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g) * 2
    y = torch.randint(0, c, (n,), generator=g)
    return centres[y] + noise * torch.randn(n, d, generator=g), y


@pytest.mark.parametrize("wd", [1e-3, 1e-1])
def test_fit_linear_matches_sklearn(wd):
    x, y = _blobs(300)
    x = x.double()
    w, b = fit_linear(x, y, 3, wd, max_iter=1000, tol=1e-10)
    # same objective: sklearn minimises C * sum CE + ||W||^2 / 2 = (mean CE + wd/2 ||W||^2) * C n
    ref = LogisticRegression(C=1.0 / (len(y) * wd), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    ours = torch.softmax(x @ w + b, dim=1).numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(x.numpy()), atol=1e-4)
    # logits are defined up to a per-row constant: compare centred weights
    np.testing.assert_allclose((w - w.mean(1, keepdim=True)).T.numpy(), ref.coef_ - ref.coef_.mean(0), rtol=1e-3, atol=1e-3)


def test_linear_probe_separable_and_protocol():
    x, y = _blobs(500, noise=0.1)
    x, y, xt, yt = x[:400], y[:400], x[400:], y[400:]
    res = linear_probe(x, y, xt, yt)
    assert res["linear_acc"] == 1.0 and res["linear_wd"] in (1e-4, 1e-3, 1e-2)
    # the test labels choose nothing: shuffled test labels give the same wd and the same predictions' train acc
    shuffled = linear_probe(x, y, xt, yt[torch.randperm(len(yt), generator=torch.Generator().manual_seed(1))])
    assert shuffled["linear_wd"] == res["linear_wd"]
    assert shuffled["linear_val_acc"] == res["linear_val_acc"]
    assert shuffled["linear_train_acc"] == res["linear_train_acc"]


def test_validation_split_is_stratified_and_disjoint():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 2)
    fit, val = stratified_split(y, 0.1, seed=0)
    assert len(set(fit.tolist()) & set(val.tolist())) == 0 and len(fit) + len(val) == len(y)
    assert torch.bincount(y[val], minlength=3).tolist() == [5, 3, 0]


def test_standardise_uses_train_statistics():
    x, _ = _blobs(200)
    xt = x[:50] * 3  # same directions: identical rows after L2 normalisation
    a, b = _standardise(x, xt)
    assert torch.allclose(a.mean(0), torch.zeros(a.shape[1]), atol=1e-5)
    assert torch.allclose(a[:50], b, atol=1e-6)


def test_degenerate_inputs_finite():
    x = torch.zeros(20, 4)  # all-zero features, one class in test
    y = torch.tensor([0, 1] * 10)
    res = linear_probe(x, y, x[:5], torch.zeros(5, dtype=torch.long))
    assert 0.0 <= res["linear_acc"] <= 1.0
    with pytest.raises(ValueError, match="linear probe needs"):
        linear_probe(x[:1], y[:1], x[:1], y[:1])


def test_evaluate_embeddings_reports_linear_probe():
    x, y = _blobs(260, noise=0.1)
    x, y, xt, yt = x[:200], y[:200], x[200:], y[200:]
    res = evaluate_embeddings(x, y, xt, yt, k=5, kmeans_restarts=1, backend="torch")
    assert res["linear_acc"] > 0.9 and "linear_wd" in res
    off = evaluate_embeddings(x, y, xt, yt, k=5, kmeans_restarts=1, backend="torch", linear_probe=False)
    assert np.isnan(off["linear_acc"])


def test_inference_mode_inputs():
    """extract_features returns inference-mode tensors; the probe must still fit on them."""
    x, y = _blobs(100, noise=0.1)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
    assert linear_probe(xi, yi, xi[:10], yi[:10], wd_grid=(1e-3,))["linear_acc"] == 1.0
