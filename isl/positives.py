"""Positive sets P_i of Instance Similarity Learning (Wang et al., ICCV 2021) as a sparse symmetric relation.

Notation -> code: P_i -> `positives` (this module); the paper's similarity matrix S (identity at the start)
is stored without its diagonal: i is always in P_i implicitly, and only mined pairs are stored. The relation
is held as int64 tensors only, no Python set per sample:

- `edge_keys` (E): the sorted, deduplicated directed edges encoded as i * N + j, both directions stored;
- the CSR view of the same edges, `indptr` (N + 1) and `indices` (E): P_i \\ {i} = indices[indptr[i]:indptr[i+1]],
  sorted.

`indptr` and `indices` are persistent buffers (saved in the state_dict; E changes as pairs are mined, so
`_load_from_state_dict` resizes `indices` before loading); `edge_keys` is rebuilt from them. Every batch
operation is vectorised (CSR gathers, searchsorted on the keys, masks): no Python loop over samples.
Similarity between an anchor feature f_i and a bank row v_j is the inner product f_i . v_j (the numerator of
the paper's p_ij before the temperature), computed by `isl.memory_bank.similarities_at`.
"""
from __future__ import annotations

import torch
from torch import nn

from .memory_bank import as_bank_tensor, similarities_at

HARD_POSITIVE_MODES = ("least_similar", "most_similar")


class PositiveSets(nn.Module):
    """P_i for i in [0, N), initially {i}; symmetric (j in P_i <=> i in P_j)."""

    def __init__(self, num_samples: int) -> None:
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"PositiveSets needs num_samples >= 2 (a negative must exist), got {num_samples}")
        self.num_samples = int(num_samples)
        self.register_buffer("indptr", torch.zeros(num_samples + 1, dtype=torch.int64))   # N + 1
        self.register_buffer("indices", torch.zeros(0, dtype=torch.int64))               # E
        self.register_buffer("edge_keys", torch.zeros(0, dtype=torch.int64), persistent=False)  # E

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, pairs={self.num_pairs()}"

    # ----------------------------------------------------------------------------------------------- checks
    def check_anchors(self, anchors: torch.Tensor) -> torch.Tensor:
        """Validate 1-D integer sample indices in [0, N); returns them as int64 on the relation's device."""
        if anchors.dim() != 1 or anchors.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"anchors must be a 1-D integer tensor of sample indices, got dtype {anchors.dtype} "
                             f"shape {tuple(anchors.shape)}")
        anchors = anchors.to(self.indptr.device, torch.int64)
        self._check_range(anchors, "anchors")
        return anchors

    def _check_range(self, x: torch.Tensor, name: str) -> None:
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_samples):
            raise IndexError(f"{name} must lie in [0, {self.num_samples}), got range [{int(x.min())}, "
                             f"{int(x.max())}]")

    # ------------------------------------------------------------------------------------------ structure
    def _rebuild(self, keys: torch.Tensor) -> None:
        """Set the relation from sorted unique directed keys i * N + j (E)."""
        n = self.num_samples
        rows = torch.div(keys, n, rounding_mode="floor")                              # E
        counts = torch.bincount(rows, minlength=n)                                    # N
        self.edge_keys = keys
        self.indices = keys - rows * n                                                # E
        self.indptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])              # N + 1

    def add_pairs(self, i: torch.Tensor, j: torch.Tensor) -> int:
        """Add the undirected pairs (i_e, j_e) (i, j: E' int64); returns how many pairs were NEW.

        Both directions are stored; self-pairs (i_e == j_e) and pairs already present are dropped.
        """
        if i.shape != j.shape or i.dim() != 1:
            raise ValueError(f"i and j must be 1-D tensors of the same length, got {tuple(i.shape)} and "
                             f"{tuple(j.shape)}")
        i, j = self.check_anchors(i), self.check_anchors(j)
        keep = i != j
        i, j = i[keep], j[keep]
        n = self.num_samples
        new_keys = torch.cat([self.edge_keys, i * n + j, j * n + i])                 # E + 2E'
        merged = torch.unique(new_keys, sorted=True)                                  # E_new, sorted
        added = (merged.numel() - self.edge_keys.numel()) // 2
        if added:
            self._rebuild(merged)
        return int(added)

    def num_pairs(self) -> int:
        """Number of undirected mined pairs (self-pairs excluded)."""
        return self.indices.numel() // 2

    def degree(self, anchors: torch.Tensor) -> torch.Tensor:
        """Number of MINED positives of each anchor, |P_i| - 1: anchors B -> B int64."""
        anchors = self.check_anchors(anchors)
        return self.indptr[anchors + 1] - self.indptr[anchors]

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All undirected pairs once, as (i, j) with i < j (E/2 each)."""
        rows = torch.div(self.edge_keys, self.num_samples, rounding_mode="floor")
        upper = rows < self.indices
        return rows[upper], self.indices[upper]

    def padded(self, anchors: torch.Tensor, max_size: int | None = None,
               include_self: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """P_i of each anchor as a padded index matrix: anchors B -> (idx B x M int64, mask B x M bool).

        With include_self (default) column 0 is i itself; the mined positives follow in increasing order.
        M = include_self + the largest degree in the batch. Padding slots hold the anchor's own index (a valid
        row, safe to gather) with mask False. max_size caps M: then only the (max_size - include_self)
        lowest-index mined positives are kept (a memory cap that changes the sets; off by default).
        """
        anchors = self.check_anchors(anchors)
        deg = self.indptr[anchors + 1] - self.indptr[anchors]                        # B
        width = int(deg.max()) if anchors.numel() else 0
        if max_size is not None:
            if max_size < 1 + include_self:
                raise ValueError(f"max_size must be >= {1 + include_self} (room for a mined positive), "
                                 f"got {max_size}")
            width = min(width, max_size - include_self)
        col = torch.arange(width, device=anchors.device)                             # W
        mask = col[None, :] < deg[:, None]                                            # B x W
        if width:
            pos = (self.indptr[anchors][:, None] + col[None, :]).masked_fill(~mask, 0)  # B x W
            idx = torch.where(mask, self.indices[pos], anchors[:, None])             # B x W
        else:
            idx = anchors[:, None].expand(-1, 0)
        if include_self:
            idx = torch.cat([anchors[:, None], idx], dim=1)                           # B x (1 + W)
            mask = torch.cat([torch.ones(anchors.shape[0], 1, dtype=torch.bool, device=anchors.device), mask], dim=1)
        return idx.contiguous(), mask.contiguous()

    def contains(self, anchors: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Membership candidates[b, k] in P_{anchors[b]} (self included): anchors B, candidates B x K -> bool B x K."""
        anchors = self.check_anchors(anchors)
        if candidates.dim() != 2 or candidates.shape[0] != anchors.shape[0]:
            raise ValueError(f"candidates must be B x K with B = {anchors.shape[0]} anchors, got "
                             f"{tuple(candidates.shape)}")
        candidates = candidates.to(anchors.device, torch.int64)
        self._check_range(candidates, "candidates")
        return self._member(anchors[:, None].expand_as(candidates), candidates)

    def _member(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Elementwise cols in P_rows (same shapes, validated int64) via searchsorted on the sorted keys."""
        found = cols == rows
        if self.edge_keys.numel():
            query = rows * self.num_samples + cols
            pos = torch.searchsorted(self.edge_keys, query).clamp_(max=self.edge_keys.numel() - 1)
            found |= self.edge_keys[pos] == query
        return found

    # ------------------------------------------------------------------------------------------- sampling
    def sample_positive(self, anchors: torch.Tensor, generator: torch.Generator | None = None,
                        include_self: bool = True) -> torch.Tensor:
        """One positive per anchor, uniform over P_i: anchors B -> B int64.

        The paper draws "a positive from P_i", and P_i contains i (S starts as the identity), so by default i
        itself is one of the |P_i| equally likely choices; include_self=False draws from the mined ones only
        when there are any (i itself while P_i = {i}).
        """
        anchors = self.check_anchors(anchors)
        deg = self.indptr[anchors + 1] - self.indptr[anchors]                        # B
        choices = deg + 1 if include_self else deg.clamp(min=1)                      # B
        u = torch.rand(anchors.shape, generator=generator, device=anchors.device)    # B
        r = (u * choices).long().clamp_(max=choices - 1)                             # B, uniform in [0, choices)
        mined = r < deg                                                               # B
        if not self.indices.numel():
            return anchors.clone()
        pos = (self.indptr[anchors] + r).masked_fill(~mined, 0)
        return torch.where(mined, self.indices[pos], anchors)

    def sample_negatives(self, anchors: torch.Tensor, k: int, generator: torch.Generator | None = None,
                         shared: bool = False) -> torch.Tensor:
        """k indices per anchor drawn uniformly (with replacement) from outside P_i: anchors B -> B x k.

        Draws uniformly from [0, N), then redraws, vectorised, only the draws that hit P_i until none do; an
        anchor whose P_i covers every sample raises (it has no negative). shared=True starts every anchor from
        ONE common draw of k (collisions still redrawn per anchor): each anchor's k candidates are still
        i.i.d. uniform outside P_i, and similarities to them cost a single B x k matmul.
        """
        return self._draw_negatives(self.check_anchors(anchors), k, generator, shared)[0]

    def _draw_negatives(self, anchors: torch.Tensor, k: int, generator: torch.Generator | None, shared: bool,
                        max_rounds: int = 10_000):
        """-> (cand B x k, pool k or None, rows, cols of the entries that were redrawn (differ from the pool))."""
        if k < 1:
            raise ValueError(f"number of negatives k must be >= 1, got {k}")
        n, b, dev = self.num_samples, anchors.numel(), anchors.device
        deg = self.indptr[anchors + 1] - self.indptr[anchors]                        # B
        if b and int(deg.max()) + 1 >= n:
            raise ValueError(f"P_i covers all {n} samples for anchors {anchors[deg + 1 >= n][:5].tolist()}: no "
                             f"negative can be drawn; mine fewer pairs (lower the quota or the radius)")
        if shared:
            pool = torch.randint(0, n, (k,), generator=generator, device=dev)          # k
            cand = pool.expand(b, k).clone()                                           # B x k
            rows, cols = self._pool_hits(anchors, pool)
        else:
            pool = None
            cand = torch.randint(0, n, (b, k), generator=generator, device=dev)       # B x k
            rows, cols = self._member(anchors[:, None].expand_as(cand), cand).nonzero(as_tuple=True)
        fixed_rows, fixed_cols = rows, cols
        for _ in range(max_rounds):
            if rows.numel() == 0:
                return cand, pool, fixed_rows, fixed_cols
            redraw = torch.randint(0, n, rows.shape, generator=generator, device=dev)
            cand[rows, cols] = redraw
            still = self._member(anchors[rows], redraw)
            rows, cols = rows[still], cols[still]
        raise RuntimeError(f"negative draws still hit P_i after {max_rounds} rounds; P_i covers almost everything")

    def _pool_hits(self, anchors: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row b, position k) of every pool entry that lies in P_{anchors[b]}: a search of the B x M members
        in the sorted pool (B x M lookups instead of B x k)."""
        sorted_pool, perm = pool.sort()                                               # k
        members, mask = self.padded(anchors)                                          # B x M
        left = torch.searchsorted(sorted_pool, members)                               # B x M
        count = (torch.searchsorted(sorted_pool, members, right=True) - left) * mask  # B x M, copies in pool
        count, left = count.flatten(), left.flatten()
        rows = torch.arange(anchors.numel(), device=pool.device).repeat_interleave(members.shape[1])
        total = int(count.sum())
        first = torch.repeat_interleave(count.cumsum(0) - count, count)               # T
        offset = torch.arange(total, device=pool.device) - first                      # T, 0..count-1
        return rows.repeat_interleave(count), perm[torch.repeat_interleave(left, count) + offset]

    def hardest_negative(self, anchor_features: torch.Tensor, anchors: torch.Tensor, bank,
                         num_candidates: int = 4096, generator: torch.Generator | None = None,
                         similarities: torch.Tensor | None = None, shared: bool = True) -> torch.Tensor:
        """The most similar of num_candidates random entries outside P_i: features B x d, anchors B -> B int64.

        bank: N x d tensor (or a MemoryBank). similarities: optional precomputed B x N f . V^T to gather from.
        shared: draw the candidates as `sample_negatives(..., shared=True)` (same distribution per anchor; the
        similarities are one B x K matmul against the common draw plus a few dot products for the redraws).
        """
        anchors = self.check_anchors(anchors)
        rows = as_bank_tensor(bank)
        cand, pool, fixed_r, fixed_c = self._draw_negatives(anchors, num_candidates, generator, shared)  # B x K
        if pool is None or similarities is not None:
            sims = similarities_at(anchor_features, rows, cand, similarities)        # B x K
        else:
            feats = anchor_features.detach().to(rows.dtype)                          # B x d
            sims = feats @ rows[pool].t()                                             # B x K
            sims[fixed_r, fixed_c] = (feats[fixed_r] * rows[cand[fixed_r, fixed_c]]).sum(dim=1)
        return cand.gather(1, sims.argmax(dim=1, keepdim=True)).squeeze(1)

    def hard_positive(self, anchor_features: torch.Tensor, anchors: torch.Tensor, bank,
                      mode: str = "least_similar",
                      similarities: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The hard positive among the MINED positives P_i \\ {i}: -> (idx B int64, has_mined B bool).

        mode: least_similar (the paper's hard positive: lowest f_i . v_j) | most_similar (the reference code).
        Anchors without a mined positive get idx = i and has_mined False (the caller then uses a second
        augmented view of i, or skips L2 for them). similarities: optional B x N f . V^T to gather from.
        """
        if mode not in HARD_POSITIVE_MODES:
            raise ValueError(f"hard-positive mode must be one of {HARD_POSITIVE_MODES}, got {mode!r}")
        anchors = self.check_anchors(anchors)
        idx, mask = self.padded(anchors, include_self=False)                         # B x M
        has_mined = mask[:, 0] if idx.shape[1] else torch.zeros_like(anchors, dtype=torch.bool)
        if idx.shape[1] == 0:
            return anchors.clone(), has_mined
        sims = similarities_at(anchor_features, as_bank_tensor(bank), idx, similarities)  # B x M
        if mode == "least_similar":
            best = sims.masked_fill(~mask, float("inf")).argmin(dim=1, keepdim=True)   # B x 1
        else:
            best = sims.masked_fill(~mask, float("-inf")).argmax(dim=1, keepdim=True)
        return torch.where(has_mined, idx.gather(1, best).squeeze(1), anchors), has_mined

    # ------------------------------------------------------------------------------------------ monitoring
    def pair_precision(self, labels: torch.Tensor) -> float | None:
        """Fraction of mined undirected pairs whose labels agree (None without pairs). Monitoring only."""
        if labels.dim() != 1 or labels.numel() != self.num_samples:
            raise ValueError(f"labels must be 1-D with one label per sample ({self.num_samples}), got "
                             f"{tuple(labels.shape)}")
        if not self.indices.numel():
            return None
        labels = labels.to(self.indices.device)
        rows = torch.div(self.edge_keys, self.num_samples, rounding_mode="floor")
        # both directions are stored, so the directed mean equals the undirected one
        return float((labels[rows] == labels[self.indices]).double().mean())

    def coverage(self, labels: torch.Tensor) -> dict[str, float | None]:
        """Share of samples with at least one mined positive, over all samples and in the least-covered class
        (samples labelled < 0, i.e. unlabelled, count in the first only). Monitoring only: a quota spent on few
        anchors leaves most instances with P_i = {i} however precise their pairs are."""
        if labels.dim() != 1 or labels.numel() != self.num_samples:
            raise ValueError(f"labels must be 1-D with one label per sample ({self.num_samples}), got "
                             f"{tuple(labels.shape)}")
        has = (self.indptr[1:] > self.indptr[:-1]).double()
        labels = labels.to(has.device).long()
        known = labels >= 0
        min_class = None
        if known.any():
            counts = torch.bincount(labels[known]).double()
            covered = torch.bincount(labels[known], weights=has[known], minlength=counts.numel())
            min_class = float((covered[counts > 0] / counts[counts > 0]).min())
        return {"pair_coverage": float(has.mean()), "pair_coverage_min_class": min_class}

    # ------------------------------------------------------------------------------------------ state
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        key = prefix + "indices"
        if key in state_dict:  # E differs between checkpoints: resize before the default copy
            incoming = state_dict[key]
            self.indices = torch.empty(incoming.shape, dtype=self.indices.dtype, device=self.indices.device)
        n_errors = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if len(error_msgs) == n_errors:
            self._validate_and_index(prefix)

    def _validate_and_index(self, prefix: str = "") -> None:
        n, indptr, indices = self.num_samples, self.indptr, self.indices
        e = indices.numel()
        ok = (indptr.numel() == n + 1 and int(indptr[0]) == 0 and int(indptr[-1]) == e
              and bool((indptr[1:] >= indptr[:-1]).all()) and (e == 0 or (int(indices.min()) >= 0
                                                                          and int(indices.max()) < n)))
        if ok:
            rows = torch.repeat_interleave(torch.arange(n, device=indptr.device), indptr[1:] - indptr[:-1])
            keys = rows * n + indices
            transposed = torch.sort(indices * n + rows).values
            ok = bool((keys[1:] > keys[:-1]).all()) and torch.equal(keys, transposed) and bool((rows != indices).all())
        if not ok:
            raise ValueError(f"{prefix or 'PositiveSets'} state is not a sorted, symmetric CSR relation without "
                             f"self-pairs over {n} samples; the checkpoint is corrupt or from another data set")
        self.edge_keys = keys
