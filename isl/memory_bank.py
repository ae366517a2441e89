"""The memory bank of instance features (Wu et al. 2018, NPID; used by ISL, Wang et al., ICCV 2021).

Notation -> code: V -> `bank` (N x d, unit rows), f_i -> `features`, tau -> `temperature`,
eta -> `momentum` (the config's `bank_momentum`). The paper's similarity is
p_ij = exp(f_i . v_j / tau) / sum_k exp(f_i . v_k / tau); `logits` returns the B x N matrix f . V^T / tau that
the objective turns into p. The update v_i <- normalise(eta f_i + (1 - eta) v_i) is an explicit call after the
optimizer step (the reference code hides it inside autograd's backward; we do not).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_momentum(momentum: float) -> float:
    if not 0.0 < momentum <= 1.0:
        raise ValueError(f"memory-bank momentum eta must be in (0, 1] (1 = overwrite with the new feature), "
                         f"got {momentum}")
    return float(momentum)


def check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature tau must be > 0 (the reference value is 0.1), got {temperature}")
    return float(temperature)


class MemoryBank(nn.Module):
    """N x d unit-norm features, one row per training sample, saved in the state_dict as buffer `bank`.

    num_samples: N; dim: d; momentum: eta in (0, 1]; generator: seeds the random initial rows
    (uniform on the unit sphere: normalised Gaussian rows, as the paper's "N random vectors").
    """

    def __init__(self, num_samples: int, dim: int, momentum: float = 0.5,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if num_samples < 1 or dim < 1:
            raise ValueError(f"MemoryBank needs num_samples >= 1 and dim >= 1, got {num_samples} and {dim}")
        self.momentum = _check_momentum(momentum)
        device = generator.device if generator is not None else None
        init = torch.randn(num_samples, dim, generator=generator, device=device)  # N x d
        self.register_buffer("bank", F.normalize(init, dim=1).cpu())

    def __len__(self) -> int:
        return self.bank.shape[0]

    @property
    def num_samples(self) -> int:
        return self.bank.shape[0]

    @property
    def dim(self) -> int:
        return self.bank.shape[1]

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, dim={self.dim}, momentum={self.momentum}"

    def _check_features(self, features: torch.Tensor, name: str = "features") -> None:
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"{name} must be B x {self.dim} (the bank's dim), got {tuple(features.shape)}")

    def _check_indices(self, indices: torch.Tensor, batch: int) -> torch.Tensor:
        if indices.dtype not in (torch.int64, torch.int32) or indices.dim() != 1 or indices.numel() != batch:
            raise ValueError(f"indices must be a 1-D integer tensor of length {batch} (one dataset index per "
                             f"feature row), got dtype {indices.dtype} shape {tuple(indices.shape)}")
        indices = indices.to(self.bank.device, torch.int64)
        if batch and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise IndexError(f"indices must lie in [0, {self.num_samples}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]; is the dataset the one the bank "
                             f"was built for?")
        return indices

    def logits(self, features: torch.Tensor, temperature: float, chunk_size: int | None = None) -> torch.Tensor:
        """f . V^T / tau for a batch: features B x d -> logits B x N (differentiable w.r.t. features).

        The 1/tau scale is applied to the B x d features, not to the B x N product (one fewer B x N pass).
        chunk_size: when set and smaller than N, the product is computed over bank chunks of that many rows
        (bounds the size of each matmul; the result is still B x N).
        """
        self._check_features(features)
        scaled = features / check_temperature(temperature)                   # B x d
        bank = self.bank.to(features.dtype)
        n = self.num_samples
        if not chunk_size or chunk_size >= n:
            return scaled @ bank.t()                                          # B x N
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 (or None for one matmul), got {chunk_size}")
        return torch.cat([scaled @ bank[s:s + chunk_size].t() for s in range(0, n, chunk_size)], dim=1)

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """v_i <- normalise(eta f_i + (1 - eta) v_i) for each i in `indices` (B), features B x d.

        Call after the optimizer step, with detached features. Duplicate indices in one call are defined:
        their features are averaged first, so the row moves once, towards the mean of its new features
        (order-independent, and identical to a single update when the duplicates carry the same feature).
        """
        self._check_features(features)
        indices = self._check_indices(indices, features.shape[0])
        if indices.numel() == 0:
            return
        feats = features.detach().to(self.bank.device, self.bank.dtype)    # B x d
        uniq, inverse = torch.unique(indices, return_inverse=True)           # U, B
        sums = torch.zeros(uniq.numel(), self.dim, dtype=feats.dtype, device=feats.device)
        sums.index_add_(0, inverse, feats)                                    # U x d
        counts = torch.bincount(inverse, minlength=uniq.numel()).to(feats.dtype)  # U
        mean = sums / counts[:, None]                                         # U x d
        old = self.bank[uniq]                                                 # U x d
        mixed = self.momentum * mean + (1.0 - self.momentum) * old            # U x d
        # a mix that cancels exactly (f = -v at eta 0.5) has no direction: keep the old row instead of a zero
        norm = mixed.norm(dim=1, keepdim=True)                                # U x 1
        self.bank[uniq] = torch.where(norm > 1e-12, mixed / norm.clamp_min(1e-12), old)


def as_bank_tensor(bank: "MemoryBank | torch.Tensor") -> torch.Tensor:
    """The N x d rows of a MemoryBank, or a N x d tensor passed through."""
    if isinstance(bank, MemoryBank):
        return bank.bank
    if isinstance(bank, torch.Tensor) and bank.dim() == 2:
        return bank
    raise TypeError(f"bank must be a MemoryBank or an N x d tensor, got {type(bank).__name__} "
                    f"{tuple(getattr(bank, 'shape', ()))}")


@torch.no_grad()
def similarities_at(features: torch.Tensor, bank: torch.Tensor, idx: torch.Tensor,
                    similarities: torch.Tensor | None = None, max_elements: int = 1 << 24) -> torch.Tensor:
    """f_b . v_{idx[b, k]} for selection (no gradient): features B x d, bank N x d, idx B x K -> B x K float.

    similarities: an optional precomputed B x N matrix (f . V^T, or the logits f . V^T / tau: any positive
    scale selects the same entries) to gather from. Otherwise, per block of anchors, either one B x N matmul
    then a gather (cheaper when K is a sizeable fraction of N: a matmul streams the bank once at full speed)
    or a gather of the K rows and a batched dot product; blocks keep temporaries under max_elements floats.
    """
    b, k = idx.shape
    if features.dim() != 2 or features.shape[0] != b:
        raise ValueError(f"features must be B x d with B = {b}, got {tuple(features.shape)}")
    if similarities is not None:
        if similarities.shape != (b, bank.shape[0]):
            raise ValueError(f"similarities must be B x N = {(b, bank.shape[0])}, got {tuple(similarities.shape)}")
        return similarities.detach().gather(1, idx)
    n, d = bank.shape
    feats = features.detach().to(bank.dtype)                                            # B x d
    full = n <= 16 * k
    rows = max(1, max_elements // (n if full else k * d))
    out = torch.empty(b, k, dtype=bank.dtype, device=bank.device)                      # B x K
    for s in range(0, b, rows):  # loop over blocks of anchors, not over anchors
        if full:
            out[s:s + rows] = (feats[s:s + rows] @ bank.t()).gather(1, idx[s:s + rows])  # rows x N -> rows x K
        else:
            out[s:s + rows] = torch.bmm(bank[idx[s:s + rows]], feats[s:s + rows, :, None]).squeeze(2)
    return out
