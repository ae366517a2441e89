"""The proxy GAN of Instance Similarity Learning (Wang et al., ICCV 2021, arXiv 2108.02721).

Notation -> code: triplet T_r = (f^a, f^p, f^n) -> (a, p, n) (B x d each, unit rows, no gradient);
G(T_r, z) -> proxy g = `Generator` (unit norm); D(triplet) -> `Discriminator` (returns LOGITS; the paper's
probability is their sigmoid); alpha -> `alpha`. Fake triplets: T_s^p = (a, g, n) (g in the positive slot),
T_s^n = (a, p, g) (g in the negative slot). With BCE-with-logits (the numerically safe form of the paper's
log D and log(1 - D)):

    D:  real (a, p, n) -> 1,  (a, g, n) -> 0,  alpha * [(a, p, g) -> 0]
    G:  (a, g, n) -> 1,  alpha * [(a, p, g) -> 1]      (non-saturating generator loss)

alpha weights the terms where g replaces the negative: larger alpha pulls g towards the negative, i.e. the
proxy explores further from the anchor. Reference code: G has no noise input (`noise_dim=0` here), D ends in a
sigmoid (we keep logits and use BCE-with-logits), both Adam lr 1e-4, the fakes weighted 1:1 (alpha = 1).
A GAN that has not learned (D at chance) makes mining harmful: check `gan_quality` on held-out triplets.

Loss weights (`LOSS_WEIGHTS`): "paper" weights the three D terms real : fake_pos : fake_neg = 1 : 1 : alpha;
"reference" is the reference code's (real 1/2, the two fakes sharing 1/2 in the ratio 1 : alpha). A D that has
learned nothing outputs the constant minimising its loss, the UNINFORMED score s0 = w_real / (w_real + w_fakes):
1 / (2 + alpha) under "paper", 1/2 under "reference". `calibrated_logit` removes that prior: sigmoid(logit(s) -
logit(s0)) is D's probability under equal class weights (the Bayes posterior when D is optimal), 0.5 for an
uninformed D under either weighting, so a threshold on it means the same thing under both.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOSS_WEIGHTS = ("paper", "reference")


def check_alpha(alpha: float) -> float:
    if not alpha >= 0:
        raise ValueError(f"alpha (the weight of the (a, p, g) terms) must be >= 0, got {alpha}")
    return float(alpha)


def _mlp(sizes: list[int], negative_slope: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(negative_slope))
    return nn.Sequential(*layers)


def _check_triplet(*xs: torch.Tensor, dim: int) -> None:
    shape = xs[0].shape
    if any(x.shape != shape for x in xs) or len(shape) != 2 or shape[1] != dim:
        raise ValueError(f"triplet parts must all be B x {dim}, got {[tuple(x.shape) for x in xs]}")


class Generator(nn.Module):
    """g = normalise(MLP(concat(a, p, n, z))): (3d + noise_dim) -> hidden... -> d, LeakyReLU between layers.

    hidden: sizes of the hidden layers (default (2d, d), the reference code's 3d -> 2d -> d -> d);
    noise_dim: size of z ~ N(0, I) (0 = the reference code's deterministic generator).
    """

    def __init__(self, dim: int, noise_dim: int = 32, hidden: tuple[int, ...] | None = None,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if dim < 1 or noise_dim < 0:
            raise ValueError(f"Generator needs dim >= 1 and noise_dim >= 0, got {dim} and {noise_dim}")
        self.dim, self.noise_dim = dim, noise_dim
        hidden = tuple(hidden) if hidden is not None else (2 * dim, dim)
        self.net = _mlp([3 * dim + noise_dim, *hidden, dim], negative_slope)

    def sample_noise(self, batch: int, generator: torch.Generator | None = None,
                     device: torch.device | None = None) -> torch.Tensor:
        """z: batch x noise_dim standard normal (batch x 0 for a deterministic generator)."""
        device = device if device is not None else next(self.parameters()).device
        return torch.randn(batch, self.noise_dim, generator=generator, device=device)

    def forward(self, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, z: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Proxies g: B x d unit rows. z: B x noise_dim (drawn from `generator` when None)."""
        _check_triplet(a, p, n, dim=self.dim)
        if z is None:
            z = self.sample_noise(a.shape[0], generator, a.device)
        if z.shape != (a.shape[0], self.noise_dim):
            raise ValueError(f"z must be B x {self.noise_dim}, got {tuple(z.shape)}")
        out = self.net(torch.cat([a, p, n, z.to(a.dtype)], dim=1))           # B x d
        return F.normalize(out, dim=1)


class Discriminator(nn.Module):
    """Logit that a triplet (a, x, n) is real: MLP 3d -> d -> d/2 -> 1 with LeakyReLU (reference code sizes)."""

    def __init__(self, dim: int, hidden: tuple[int, ...] | None = None, negative_slope: float = 0.2) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"Discriminator needs dim >= 1, got {dim}")
        self.dim = dim
        hidden = tuple(hidden) if hidden is not None else (dim, max(1, dim // 2))
        self.net = _mlp([3 * dim, *hidden, 1], negative_slope)

    def forward(self, a: torch.Tensor, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Logits B (no sigmoid)."""
        _check_triplet(a, x, n, dim=self.dim)
        return self.net(torch.cat([a, x, n], dim=1)).squeeze(1)


def loss_weights(alpha: float, mode: str = "paper") -> tuple[float, float, float]:
    """Weights of D's terms (real, fake_pos, fake_neg); G weights its two terms as D's two fakes."""
    alpha = check_alpha(alpha)
    if mode == "paper":
        return 1.0, 1.0, alpha
    if mode == "reference":  # (BCE(real) + (BCE(fp) + alpha BCE(fn)) / (1 + alpha)) / 2
        return 0.5, 0.5 / (1.0 + alpha), 0.5 * alpha / (1.0 + alpha)
    raise ValueError(f"loss weights must be one of {LOSS_WEIGHTS}, got {mode!r}")


def uninformed_score(alpha: float, mode: str = "paper") -> float:
    """The constant score s0 that minimises D's loss when D cannot tell real from fake: w_real / sum of weights."""
    w_real, w_fp, w_fn = loss_weights(alpha, mode)
    return w_real / (w_real + w_fp + w_fn)


def uninformed_logit(alpha: float, mode: str = "paper") -> float:
    """logit(s0) of `uninformed_score`: 0 under the reference weights, -log(1 + alpha) under the paper's."""
    s0 = uninformed_score(alpha, mode)
    return math.log(s0 / (1.0 - s0))


def calibrated_logit(logits: torch.Tensor, alpha: float, mode: str = "paper") -> torch.Tensor:
    """D's logits minus the uninformed logit: sigmoid of the result is 0.5 for an uninformed D (any weights)."""
    return logits - uninformed_logit(alpha, mode)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(real: torch.Tensor, fake_pos: torch.Tensor, fake_neg: torch.Tensor, alpha: float,
                       weights: str = "paper") -> torch.Tensor:
    """w_r BCE(real -> 1) + w_p BCE(fake_pos -> 0) + w_n BCE(fake_neg -> 0), each a mean over the batch (logits B);
    (w_r, w_p, w_n) = `loss_weights(alpha, weights)`, (1, 1, alpha) for the paper."""
    w_real, w_fp, w_fn = loss_weights(alpha, weights)
    return w_real * _bce(real, 1.0) + w_fp * _bce(fake_pos, 0.0) + w_fn * _bce(fake_neg, 0.0)


def generator_loss(fake_pos: torch.Tensor, fake_neg: torch.Tensor, alpha: float,
                   weights: str = "paper") -> torch.Tensor:
    """w_p BCE(fake_pos -> 1) + w_n BCE(fake_neg -> 1) (logits B); (1, alpha) for the paper, normalised to sum 1
    for the reference code."""
    _, w_fp, w_fn = loss_weights(alpha, weights)
    if weights == "reference":  # the reference code's G loss is not halved
        w_fp, w_fn = 2 * w_fp, 2 * w_fn
    return w_fp * _bce(fake_pos, 1.0) + w_fn * _bce(fake_neg, 1.0)


def gan_step(G: Generator, D: Discriminator, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
             a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, alpha: float,
             generator: torch.Generator | None = None, d_steps: int = 1,
             weights: str = "paper") -> dict[str, torch.Tensor]:
    """`d_steps` D updates then one G update on a batch of real triplets (a, p, n: B x d, treated as constants).

    Each D update sees fresh proxies (new noise z) of the same triplets; G is updated on the last ones. Returns detached scalar tensors (convert
    to floats at log time): d_loss (the first D update's), g_loss, and D's mean probabilities d_real,
    d_fake_pos, d_fake_neg on this batch before D's first update.
    """
    alpha = check_alpha(alpha)
    if d_steps < 1:
        raise ValueError(f"d_steps (D updates per G update) must be >= 1, got {d_steps}")
    a, p, n = a.detach(), p.detach(), n.detach()
    for step in range(d_steps):
        # the last D update's proxies keep their graph: G's update below reuses them (same draws as one step)
        with torch.set_grad_enabled(step == d_steps - 1):
            g = G(a, p, n, generator=generator)                               # B x d
        real, fake_pos, fake_neg = D(a, p, n), D(a, g.detach(), n), D(a, p, g.detach())  # B each
        loss = discriminator_loss(real, fake_pos, fake_neg, alpha, weights)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        if step == 0:
            d_loss, first = loss.detach(), (real.detach(), fake_pos.detach(), fake_neg.detach())
    # G against the updated D; gradients are accumulated into G's parameters only
    g_loss = generator_loss(D(a, g, n), D(a, p, g), alpha, weights)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward(inputs=list(G.parameters()))
    opt_g.step()
    real, fake_pos, fake_neg = first
    return {"d_loss": d_loss, "g_loss": g_loss.detach(), "d_real": torch.sigmoid(real).mean(),
            "d_fake_pos": torch.sigmoid(fake_pos).mean(), "d_fake_neg": torch.sigmoid(fake_neg).mean()}


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve of scores that should rank `positive` above `negative` (1-D each).

    The Mann-Whitney statistic with ties counted one half (scikit-learn's roc_auc_score): the probability that a
    random positive outscores a random negative. 0.5 = no information. NaN when either side is empty.
    """
    n_pos, n_neg = positive.numel(), negative.numel()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    scores = torch.cat([positive.flatten(), negative.flatten()]).double()
    values, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mid_rank = ends - (counts.double() - 1) / 2                                   # average 1-based rank of a tie
    rank_sum = mid_rank[inverse[:n_pos]].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def gan_quality(G: Generator, D: Discriminator, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor,
                alpha: float = 1.0, generator: torch.Generator | None = None,
                weights: str = "paper") -> dict[str, float]:
    """How well D separates real from fake triplets on (held-out) triplets a, p, n (B x d): floats.

    d_real / d_fake_pos / d_fake_neg: D's mean probability on (a, p, n), (a, g, n), (a, p, g);
    acc_*: fraction on the right side of 0.5; accuracy: (acc_real + mean of the two fake accuracies) / 2
    (0.5 = chance); auc: ROC AUC of D's score, real against both fakes pooled (0.5 = D learned nothing,
    whatever the loss weights); auc_pos / auc_neg: real against (a, g, n) only (the triplet mining scores) /
    against (a, p, g) only; d_loss, g_loss: the training losses on these triplets. A GAN that has not learned
    scores every triplet near the uninformed level (`uninformed_score`) and has an AUC near 0.5.
    """
    alpha = check_alpha(alpha)
    g = G(a, p, n, generator=generator)
    real, fake_pos, fake_neg = D(a, p, n), D(a, g, n), D(a, p, g)
    acc_real = (real > 0).double().mean()
    acc_fp, acc_fn = (fake_pos < 0).double().mean(), (fake_neg < 0).double().mean()
    return {"d_real": float(torch.sigmoid(real).mean()), "d_fake_pos": float(torch.sigmoid(fake_pos).mean()),
            "d_fake_neg": float(torch.sigmoid(fake_neg).mean()), "acc_real": float(acc_real),
            "acc_fake_pos": float(acc_fp), "acc_fake_neg": float(acc_fn),
            "accuracy": float((acc_real + (acc_fp + acc_fn) / 2) / 2),
            "auc": roc_auc(real, torch.cat([fake_pos, fake_neg])), "auc_pos": roc_auc(real, fake_pos),
            "auc_neg": roc_auc(real, fake_neg),
            "d_loss": float(discriminator_loss(real, fake_pos, fake_neg, alpha, weights)),
            "g_loss": float(generator_loss(fake_pos, fake_neg, alpha, weights))}


class EarlyStopping:
    """Stop when a monitored value has not improved by more than min_delta for `patience` calls.

    mode: "min" (losses) or "max". `step(value) -> bool` (True = stop). Plain-value state_dict for resume.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, mode: str = "min") -> None:
        if patience < 1 or min_delta < 0 or mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping needs patience >= 1, min_delta >= 0 and mode 'min' or 'max', got "
                             f"{patience}, {min_delta}, {mode!r}")
        self.patience, self.min_delta, self.mode = int(patience), float(min_delta), mode
        self.best: float | None = None
        self.bad_steps = 0

    def step(self, value: float) -> bool:
        value = float(value)
        if value != value:  # NaN never counts as an improvement
            improved = False
        elif self.best is None:
            improved = True
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.bad_steps = value, 0
        else:
            self.bad_steps += 1
        return self.bad_steps >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_steps": self.bad_steps}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_steps = state["best"], int(state["bad_steps"])
