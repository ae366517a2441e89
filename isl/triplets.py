"""Triplets (anchor, positive, negative) for the proxy GAN of ISL (Wang et al., ICCV 2021).

Notation -> code: T_r = (f^a, f^p, f^n) -> (a, p, n), B x d each; P_i -> `positives`; the memory bank V ->
`bank` (N x d rows). For anchor i: a = its feature (the encoder's output, or its bank row on frozen
features); p = the bank row of a positive drawn uniformly from P_i (the paper; i itself is one of the choices)
or, with positive_source="self", the anchor's own bank row (the reference code); n = the bank row of the
hardest (most similar to a) of `num_candidates` random entries outside P_i (the reference code: 4096).
All of it is batched: one vectorised draw per batch, no loop over anchors.
"""
from __future__ import annotations

import torch

from .memory_bank import as_bank_tensor
from .positives import PositiveSets

POSITIVE_SOURCES = ("mined", "self")


def triplet_indices(anchor_features: torch.Tensor, anchors: torch.Tensor, bank, positives: PositiveSets,
                    num_candidates: int = 4096, generator: torch.Generator | None = None,
                    positive_source: str = "mined", include_self: bool = True,
                    similarities: torch.Tensor | None = None,
                    shared_candidates: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Bank rows of the positive and the negative of each anchor: -> (pos_idx B, neg_idx B) int64.

    anchor_features: B x d; anchors: B dataset indices; bank: N x d tensor or MemoryBank; include_self: with
    positive_source "mined", whether i itself may be drawn when it has mined positives; similarities: optional
    precomputed B x N anchor-to-bank similarities for the negative search; shared_candidates: see
    `PositiveSets.hardest_negative` (same distribution per anchor, one B x K matmul).
    """
    if positive_source not in POSITIVE_SOURCES:
        raise ValueError(f"positive_source must be one of {POSITIVE_SOURCES}, got {positive_source!r}")
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
    rows = as_bank_tensor(bank)
    if anchor_features.dim() != 2 or anchor_features.shape != (anchors.shape[0], rows.shape[1]):
        raise ValueError(f"anchor_features must be B x d = {(anchors.shape[0], rows.shape[1])}, got "
                         f"{tuple(anchor_features.shape)}")
    if positive_source == "mined":
        pos_idx = positives.sample_positive(anchors, generator, include_self=include_self)      # B
    else:
        pos_idx = anchors.to(rows.device, torch.int64)                                         # B
    neg_idx = positives.hardest_negative(anchor_features, anchors, rows, num_candidates, generator,
                                         similarities=similarities, shared=shared_candidates)  # B
    return pos_idx, neg_idx


@torch.no_grad()
def build_triplets(anchor_features: torch.Tensor, anchors: torch.Tensor, bank, positives: PositiveSets,
                   num_candidates: int = 4096, generator: torch.Generator | None = None,
                   positive_source: str = "mined", include_self: bool = True,
                   similarities: torch.Tensor | None = None,
                   shared_candidates: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, p, n), each B x d, detached: a = anchor_features, p and n = bank rows (see `triplet_indices`)."""
    rows = as_bank_tensor(bank)
    pos_idx, neg_idx = triplet_indices(anchor_features, anchors, rows, positives, num_candidates, generator,
                                       positive_source, include_self, similarities, shared_candidates)
    a = anchor_features.detach().to(rows.dtype)
    return a, rows[pos_idx], rows[neg_idx]

