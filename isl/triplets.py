"""Triplets (anchor, positive, negative) for the proxy GAN of ISL (Wang et al., ICCV 2021).

Notation -> code: T_r = (f^a, f^p, f^n) -> (a, p, n), B x d each; P_i -> `positives`; the memory bank V ->
`bank` (N x d rows); the encoder's feature of a fresh augmented view of image i -> `views` (a row per anchor).

- anchor (`ANCHORS`): "view" = the encoder's feature of a fresh augmented view of i (the reference code: the GAN
  and the miner see the encoder's output for an augmented image); "bank_row" = v_i (frozen features).
- positive (`POSITIVE_SOURCES`): "mined" = the bank row of a member of P_i drawn uniformly, i itself included
  (the paper's "a positive from P_i"; with a bank-row anchor and P_i = {i} that makes p = a exactly);
  "other" = a member of P_i other than i when P_i has one, else the other one of {view feature, bank row} of i
  than the anchor, so p is never the anchor's own vector; "self" = v_i (the reference code).
- negative: the hardest (most similar to a) of `num_candidates` random entries outside P_i (reference: 4096;
  on a small N cap it well below N, or the hardest of K is simply a's nearest neighbour).

All of it is batched: one vectorised draw per batch, no loop over anchors.
"""
from __future__ import annotations

import torch

from .memory_bank import as_bank_tensor
from .positives import PositiveSets

POSITIVE_SOURCES = ("mined", "other", "self")
ANCHORS = ("bank_row", "view")


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
    if positive_source in ("mined", "other"):
        pos_idx = positives.sample_positive(anchors, generator,
                                            include_self=include_self and positive_source == "mined")  # B
    else:
        pos_idx = anchors.to(rows.device, torch.int64)                                         # B
    neg_idx = positives.hardest_negative(anchor_features, anchors, rows, num_candidates, generator,
                                         similarities=similarities, shared=shared_candidates)  # B
    return pos_idx, neg_idx


def anchor_features(anchors: torch.Tensor, bank: torch.Tensor, views: torch.Tensor | None,
                    anchor: str = "bank_row") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(a, alt): the anchors' features under `anchor` and the other one of {view feature, bank row} (or None).

    anchors: B indices; bank: N x d; views: B x d view features of the same anchors (None: no view available).
    """
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    own = bank[anchors]                                                               # B x d
    if anchor == "bank_row":
        return own, views
    if views is None:
        raise ValueError("anchor='view' needs the encoder's features of augmented views (views=B x d)")
    return views.to(bank.dtype), own


@torch.no_grad()
def build_triplets(anchor_features: torch.Tensor, anchors: torch.Tensor, bank, positives: PositiveSets,
                   num_candidates: int = 4096, generator: torch.Generator | None = None,
                   positive_source: str = "mined", include_self: bool = True,
                   similarities: torch.Tensor | None = None, shared_candidates: bool = True,
                   alt_features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, p, n), each B x d, detached: a = anchor_features, p and n = bank rows (see `triplet_indices`).

    alt_features: B x d, the positive of anchors without a mined positive under positive_source="other" (the
    other one of {view feature, bank row} than the anchor); None keeps their own bank row there.
    """
    rows = as_bank_tensor(bank)
    pos_idx, neg_idx = triplet_indices(anchor_features, anchors, rows, positives, num_candidates, generator,
                                       positive_source, include_self, similarities, shared_candidates)
    a, p = anchor_features.detach().to(rows.dtype), rows[pos_idx]
    if positive_source == "other" and alt_features is not None:
        p = torch.where((pos_idx == anchors.to(pos_idx.device))[:, None], alt_features.to(rows.dtype), p)
    return a, p, rows[neg_idx]
