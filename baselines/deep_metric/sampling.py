"""Seedable random selection over masked rows, for the Deep_metric losses that draw pairs at random.

Source: github bnulihaixia/Deep_metric (source document 003), where each row calls
`torch.multinomial(prob, num, replacement=False)` inside a loop over the batch. Here one call selects, for
every row at once, `num[i]` distinct entries of row i with probabilities proportional to exp(logits)
restricted to the row's mask, by the exponential race (Gumbel-top-k): with u ~ U(0, 1) i.i.d.,

    keys = logits - log(-log(u)),   selected = the num[i] largest keys of row i among its masked entries,

which has exactly the law of sequential draws without replacement (what torch.multinomial does per row).
The uniforms come from a CPU torch.Generator and are moved to the data's device, so a seed gives the same
draws on every device, and a test can recompute them.

Probability rules used by the family (all on detached values):
    exp(scale * similarity)                     DistWeight's positive draw: logits = scale * s
    "Gaussian probability" of the source        logits = +z^2 / 2, z = (d - mean) / std over the row's
                                                negatives (the source's `exp((d - mean)^2 / (2 std^2))`,
                                                note the + sign: it favours both tails);
                                                favour_tails=False gives the density exp(-z^2 / 2) instead.
"""
from __future__ import annotations

import torch

from .pairs import masked_mean

UNIFORM_FLOOR = 1e-20  # keeps -log(u) finite when u == 0


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with `seed`, or None (torch's global RNG) when seed is None."""
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return torch.Generator(device="cpu").manual_seed(seed)


def uniform_noise(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) draws of `shape` from `generator` (drawn on CPU), with the dtype and device of `like`."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return u.to(device=like.device, dtype=like.dtype)


def gumbel_keys(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Race keys logits + Gumbel(u). logits, uniforms: same shape."""
    u = uniforms.clamp(UNIFORM_FLOOR, 1.0)
    return logits - torch.log((-torch.log(u)).clamp_min(UNIFORM_FLOOR))


def select_by_keys(keys: torch.Tensor, mask: torch.Tensor, num: torch.Tensor | int) -> torch.Tensor:
    """Bool mask of the num[i] largest keys among the masked entries of each row. keys, mask: ... x M."""
    keys = keys.masked_fill(~mask, float("-inf"))
    order = keys.argsort(dim=-1, descending=True)  # ... x M
    ranks = torch.empty_like(order)
    positions = torch.arange(keys.shape[-1], device=keys.device).expand_as(order)
    ranks.scatter_(-1, order, positions)  # ranks[..., j]: place of entry j in the race
    if isinstance(num, int):
        num = torch.full(keys.shape[:-1], num, dtype=torch.long, device=keys.device)
    return (ranks < num.unsqueeze(-1)) & mask


def sample_without_replacement(logits: torch.Tensor, mask: torch.Tensor, num: torch.Tensor | int,
                               generator: torch.Generator | None) -> torch.Tensor:
    """Draw num[i] distinct masked entries of row i with probability proportional to exp(logits).

    logits, mask: ... x M (logits finite); num: int or ... (rows with fewer masked entries get all of them).
    Returns a bool mask of the selected entries. Uses one U(0, 1) tensor of logits.shape from `generator`.
    """
    uniforms = uniform_noise(tuple(logits.shape), generator, logits)
    return select_by_keys(gumbel_keys(logits.detach(), uniforms), mask, num)


def gaussian_logits(values: torch.Tensor, mask: torch.Tensor, favour_tails: bool = True,
                    eps: float = 1e-12) -> torch.Tensor:
    """Log-probabilities (up to a row constant) of the source's Gaussian selection rule, masked rows.

    mean and (population) std are taken over each row's masked entries; logits = +z^2/2 (favour_tails, the
    source's sign) or -z^2/2. A row whose values are all equal (std = 0) gets z = 0: a uniform draw.
    """
    values = values.detach()
    mean = masked_mean(values, mask).unsqueeze(-1)  # ... x 1
    var = masked_mean((values - mean).pow(2), mask).unsqueeze(-1)
    z = torch.where(var > eps, (values - mean) / var.clamp_min(eps).sqrt(), torch.zeros_like(values))
    z = torch.where(mask, z, torch.zeros_like(z))
    return 0.5 * z.pow(2) if favour_tails else -0.5 * z.pow(2)
