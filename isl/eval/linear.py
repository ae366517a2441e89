"""Linear probe: a multinomial logistic-regression classifier on frozen features (the standard SSL protocol).

Protocol: features L2-normalised, then standardised per dimension with the TRAIN split's mean and std (a fixed
affine map, as the parameter-free BatchNorm in front of the linear layer of MoCo v3 / MAE probes); a linear
classifier W x + b trained on the labelled train split, top-1 accuracy on the test split.

Fit: full-batch L-BFGS in torch (strong-Wolfe line search) on mean cross entropy + wd/2 ||W||^2 (the bias is
not penalised), from zero weights, so the result is deterministic for fixed features. Why not SGD for 100
epochs: the objective is convex, and full-batch L-BFGS reaches its optimum in a few seconds on 60k x 128 on
two CPU cores (and runs on a GPU where the features live). It minimises the same objective as scikit-learn's
`LogisticRegression(C=1 / (n wd))` (tests/test_eval_linear.py checks the two agree).

Regularisation: wd is chosen on a validation split carved out of the TRAIN split (10 %, stratified by a fixed
seed) from `wd_grid`, then the classifier is refit on the whole train split: the test labels choose nothing.
Budget: `select_iter` L-BFGS iterations per candidate, `max_iter` for the final fit (on 54k x 128 features,
2 CPU cores: ~2.5 s per 50 iterations); the probe of a CIFAR-scale run costs about half a minute.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

WD_GRID = (1e-4, 1e-3, 1e-2)


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """L2-normalise rows, then (x - mean) / std with the statistics of `train`."""
    train = F.normalize(train.double(), dim=1)
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)                          # d, d
    return [((F.normalize(x.double(), dim=1) - mean) / std).float() for x in (train, *others)]


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, wd: float, max_iter: int = 500,
               tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin_{W, b} mean CE(x W + b, y) + wd/2 ||W||^2 by full-batch L-BFGS. x: N x d, y: N -> (W d x C, b C)."""
    if wd < 0:
        raise ValueError(f"wd must be >= 0, got {wd}")
    w = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, device=x.device, requires_grad=True)  # d x C
    b = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)             # C
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * wd * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def _accuracy(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(((x @ w + b).argmax(1) == y).double().mean())


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (fit, validation) positions of the train split: `fraction` of every class, fixed seed."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(y.numel(), generator=g)                                   # N
    y_sorted, by_class = torch.sort(y[order].cpu(), stable=True)                     # N
    order = order[by_class]                                                          # grouped by class
    counts = torch.bincount(y_sorted)                                                # C
    starts = torch.cumsum(counts, 0) - counts                                        # C
    rank = torch.arange(y.numel()) - starts.repeat_interleave(counts)                # rank within class
    n_val = (counts.double() * fraction).floor().long().clamp(max=counts - 1)        # C, keep one to fit
    is_val = rank < n_val.repeat_interleave(counts)                                  # N
    return order[~is_val], order[is_val]


@torch.no_grad()
def linear_probe(train_x, train_y, test_x, test_y, *, num_classes: int | None = None,
                 wd_grid: tuple[float, ...] = WD_GRID, val_fraction: float = 0.1, seed: int = 0,
                 max_iter: int = 200, select_iter: int = 100) -> dict:
    """Top-1 test accuracy of a linear classifier on frozen features; -> {linear_acc, linear_wd, ...}.

    train_x: N x d, train_y: N (labels 0..C-1), test_x: M x d, test_y: M. wd is picked from `wd_grid` on a
    stratified validation split of the train split (a single value skips the selection).
    """
    train_x, test_x = torch.as_tensor(train_x), torch.as_tensor(test_x)
    # clones: labels may be inference-mode tensors (extract_features), which autograd cannot save
    train_y = torch.as_tensor(train_y).long().to(train_x.device).clone()
    test_y = torch.as_tensor(test_y).long().to(test_x.device).clone()
    if train_x.shape[0] < 2 or test_x.shape[0] < 1:
        raise ValueError(f"linear probe needs >= 2 train and >= 1 test points, got {train_x.shape[0]} and "
                         f"{test_x.shape[0]}")
    c = int(num_classes or max(int(train_y.max()), int(test_y.max())) + 1)
    x_train, x_test = _standardise(train_x, test_x)
    val_acc = {}
    if len(wd_grid) > 1:
        fit, val = stratified_split(train_y, val_fraction, seed)
        xf, xv = _standardise(train_x[fit], train_x[val])
        for wd in wd_grid:
            val_acc[wd] = _accuracy(*fit_linear(xf, train_y[fit], c, wd, select_iter), xv, train_y[val])
        wd = max(wd_grid, key=lambda v: (val_acc[v], v))  # ties -> the stronger regularisation
    else:
        wd = wd_grid[0]
    w, b = fit_linear(x_train, train_y, c, wd, max_iter)
    return {"linear_acc": _accuracy(w, b, x_test, test_y), "linear_train_acc": _accuracy(w, b, x_train, train_y),
            "linear_wd": float(wd), "linear_val_acc": {f"{k:g}": v for k, v in val_acc.items()}}
