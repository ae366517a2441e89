"""Mining new positive pairs: ISL's radius-and-threshold rule with GAN proxies, and the plain kNN baseline.

Source: Wang et al., "Instance Similarity Learning for Unsupervised Feature Representation", ICCV 2021.
Notation -> code: r -> `radius` (Euclidean, on unit vectors), h -> `threshold` (a probability), the number of
proxies drawn per anchor -> `n_proxies`, P_i -> `positives`, V -> `bank`. For each anchor i (a = its bank
row, p and n as in `isl.triplets`):

    g_1..g_P = G(a, p, n, z_q)           q = 1..n_proxies, z_q ~ N(0, I)
    g* = argmax_q D(a, g_q, n)           (the proxy D finds most like a positive)
    if sigmoid(D(a, g*, n)) > h:  every j != i with ||g* - v_j|| < r (at most `topk`, nearest first) pairs with i

On unit vectors ||g - v|| < r  <=>  g . v > 1 - r^2 / 2, so the search is an exact inner-product top-k
(`isl.neighbors.topk_inner_product`, faiss or torch) followed by a cosine filter. radius_mode="adaptive_cosine"
is the reference code's rule instead: g . v > R + (1 - s)(1 - R), s = D's score, R = adaptive_base (r unused).
`mine_knn` is the Euclidean baseline the paper argues against: the anchor's own neighbours within r.
The anchor a is v_i or, with anchor="view", the encoder's feature of a fresh augmented view of i (`isl.triplets`);
with threshold_mode "relative" the score compared with h is D's calibrated probability (`isl.gan.calibrated_logit`:
0.5 = an uninformed D under either loss weighting), passed in as `logit_offset`.

When a pass finds more candidates than a round's quota has room for, `select_pairs` keeps a random subset
(fill="random") or the most confident first (fill="ranked": by D's score of the anchor's best proxy for the GAN,
then by the proxy's similarity to the neighbour; by the similarity v_i . v_j for knn), or in that order but
spread over the anchors (fill="spread": every anchor's best candidate before any anchor's second; a ranked fill
can spend a whole quota on the few anchors of dense regions).

These functions RETURN candidate pairs; the caller adds them with `PositiveSets.add_pairs` (so a trainer can
enforce a per-round quota and log precision). Anchors are processed in chunks; no Python loop over anchors.
Random draws, in order per chunk: the triplets' positives and negatives (`triplet_indices`), then the noise of
all proxies, z: (C * n_proxies) x noise_dim, where rows c * n_proxies ... (c + 1) * n_proxies - 1 are anchor c's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .memory_bank import as_bank_tensor
from .neighbors import topk_inner_product
from .positives import PositiveSets
from .triplets import anchor_features, build_triplets

RADIUS_MODES = ("fixed", "adaptive_cosine")
FILLS = ("random", "ranked", "spread")


@dataclass
class MiningResult:
    """Candidate pairs of one mining pass (E' each; may repeat a pair found from both ends)."""
    pairs_i: torch.Tensor            # E' int64, the anchor
    pairs_j: torch.Tensor            # E' int64, the bank entry that joins P_i
    anchors: torch.Tensor            # A int64, the anchors of this pass
    accepted: torch.Tensor           # A bool, the anchors whose best proxy passed the threshold (all for knn)
    scores: torch.Tensor | None      # A float, sigmoid(D(a, g*, n)) (None for knn; NaN where P_i = all)
    cos_threshold: torch.Tensor      # A float, the cosine a neighbour had to exceed (NaN where P_i = all)
    num_accepted_anchors: int
    num_capped: int                  # accepted anchors whose search came back full: more may lie within r
    pair_scores: torch.Tensor | None = None  # E' float, the rank of each pair for fill="ranked" (higher first)
    pair_sims: torch.Tensor | None = None    # E' float, query . v_j (g* for the GAN, v_i for knn): tie-break
    diagnostics: dict | None = None          # GAN: mean cos(g*, a / p / n) over accepted anchors


def check_radius(radius: float) -> float:
    if not 0 < radius <= 2:
        raise ValueError(f"radius r must be in (0, 2] (a Euclidean distance between unit vectors; cosine c is "
                         f"distance sqrt(2 - 2c)), got {radius}")
    return float(radius)


def check_threshold(threshold: float) -> float:
    if not 0 < threshold < 1:
        raise ValueError(f"threshold h must be in (0, 1) (D's probability that a triplet is real), got {threshold}")
    return float(threshold)


def _neighbour_pairs(queries: torch.Tensor, anchors: torch.Tensor, cos_thr: torch.Tensor, bank: torch.Tensor,
                     positives: PositiveSets, topk: int | None, max_neighbors: int, backend: str,
                     exclude_existing: bool, search_chunk: int):
    """Pairs for bank rows j != anchor with queries . v_j > cos_thr (queries Q x d, anchors Q):
    -> (anchor E', j E', queries . v_j E', query row E', number of capped queries)."""
    if queries.shape[0] == 0:
        empty = anchors.new_zeros(0)
        return empty, empty, bank.new_zeros(0), empty, 0
    cap = topk if topk else max_neighbors
    k = min(cap + 1, bank.shape[0])  # + 1: the anchor itself may be among the nearest
    sims, nbr = topk_inner_product(queries, bank, k, backend=backend, chunk_size=search_chunk)  # Q x k, best first
    sims, nbr = sims.to(bank.device), nbr.to(bank.device)
    valid = (sims > cos_thr[:, None]) & (nbr != anchors[:, None])                   # Q x k
    valid &= valid.cumsum(dim=1) <= cap                                             # the nearest `cap`
    capped = int((valid.sum(dim=1) >= cap).sum()) if not topk else 0
    if exclude_existing:
        valid &= ~positives.contains(anchors, nbr)
    qrow = torch.arange(queries.shape[0], device=nbr.device)[:, None].expand_as(nbr)
    return anchors[:, None].expand_as(nbr)[valid], nbr[valid], sims[valid], qrow[valid], capped


def _check_common(anchors: torch.Tensor, bank: torch.Tensor, positives: PositiveSets, topk: int | None,
                  chunk_size: int, max_neighbors: int, search_chunk: int) -> torch.Tensor:
    if bank.shape[0] != positives.num_samples:
        raise ValueError(f"bank has {bank.shape[0]} rows but positives cover {positives.num_samples} samples")
    if topk is not None and topk < 1:
        raise ValueError(f"topk must be >= 1 or None (no cap beyond max_neighbors), got {topk}")
    if min(chunk_size, max_neighbors, search_chunk) < 1:
        raise ValueError(f"chunk_size, max_neighbors and search_chunk must be >= 1, got {chunk_size}, "
                         f"{max_neighbors} and {search_chunk}")
    return positives.check_anchors(anchors)


@torch.no_grad()
def mine_gan(anchors: torch.Tensor, bank, positives: PositiveSets, G, D, *, radius: float, threshold: float,
             n_proxies: int, topk: int | None = None, radius_mode: str = "fixed", adaptive_base: float = 0.6,
             num_candidates: int = 4096, chunk_size: int = 1024, backend: str = "auto",
             generator: torch.Generator | None = None, positive_source: str = "mined",
             max_neighbors: int = 64, exclude_existing: bool = True, shared_candidates: bool = True,
             search_chunk: int = 256, views: torch.Tensor | None = None, anchor: str = "bank_row",
             logit_offset: float = 0.0) -> MiningResult:
    """One pass of ISL mining over `anchors` (A int64) with generator G and discriminator D (see module doc).

    bank: N x d unit rows (or a MemoryBank); topk: at most this many neighbours per anchor (None: all within
    r, searched among the max_neighbors nearest; `num_capped` counts anchors that hit that cap);
    exclude_existing: drop pairs already in P_i; shared_candidates: see `PositiveSets.hardest_negative`;
    search_chunk: queries per matmul in the torch neighbour search (bounds its search_chunk x N temporary);
    views: N x d encoder features of an augmented view of every sample (needed by anchor="view" and used by
    positive_source="other"); logit_offset: subtracted from D's logit before the sigmoid (relative threshold).
    """
    rows = as_bank_tensor(bank)
    anchors = _check_common(anchors, rows, positives, topk, chunk_size, max_neighbors, search_chunk)
    radius, threshold = check_radius(radius), check_threshold(threshold)
    if n_proxies < 1:
        raise ValueError(f"n_proxies must be >= 1, got {n_proxies}")
    if radius_mode not in RADIUS_MODES:
        raise ValueError(f"radius_mode must be one of {RADIUS_MODES}, got {radius_mode!r}")
    if not 0 <= adaptive_base < 1:
        raise ValueError(f"adaptive_base R must be in [0, 1), got {adaptive_base}")
    if views is not None and views.shape != rows.shape:
        raise ValueError(f"views must be N x d = {tuple(rows.shape)} (a view feature per sample), got "
                         f"{tuple(views.shape)}")
    out_i, out_j, out_s, out_sim, scores, thresholds, capped = [], [], [], [], [], [], 0
    cos_sums = torch.zeros(3, dtype=torch.float64)  # cos(g*, a), cos(g*, p), cos(g*, n) over accepted anchors
    for start in range(0, anchors.numel(), chunk_size):  # chunks of anchors, not single anchors
        chunk = anchors[start:start + chunk_size]                                     # C'
        # an anchor whose P_i already holds every sample has no negative and nothing left to mine
        open_ = positives.degree(chunk) + 1 < positives.num_samples                  # C'
        score = torch.full(chunk.shape, float("nan"), dtype=rows.dtype, device=rows.device)
        thr = torch.full_like(score, float("nan"))
        anc = chunk[open_]                                                            # C
        c, d = anc.numel(), rows.shape[1]
        a, alt = anchor_features(anc, rows, None if views is None else views[anc], anchor)  # C x d
        a, p, n = build_triplets(a, anc, rows, positives, num_candidates, generator, positive_source,
                                 shared_candidates=shared_candidates, alt_features=alt)
        rep = lambda x: x.repeat_interleave(n_proxies, dim=0)                         # (C P) x d
        a_r, p_r, n_r = rep(a), rep(p), rep(n)
        z = G.sample_noise(c * n_proxies, generator, rows.device)                    # (C P) x noise_dim
        g = G(a_r, p_r, n_r, z)                                                       # (C P) x d
        logit = D(a_r, g, n_r).view(c, n_proxies)                                     # C x P
        best_logit, best = logit.max(dim=1)                                           # C
        g_star = g.view(c, n_proxies, d)[torch.arange(c, device=g.device), best]     # C x d
        s = torch.sigmoid(best_logit - logit_offset).to(rows.dtype)                   # C
        if radius_mode == "fixed":
            t = torch.full_like(s, 1.0 - radius**2 / 2)                               # C
        else:
            t = adaptive_base + (1.0 - s) * (1.0 - adaptive_base)                     # C
        score[open_], thr[open_] = s, t
        ok = s > threshold                                                            # C
        gs = g_star[ok].to(rows.dtype)
        cos_sums += torch.stack([(gs * x[ok]).sum(dim=1).sum() for x in (a, p, n)]).double().cpu()
        pi, pj, sim, q, cap = _neighbour_pairs(gs, anc[ok], t[ok], rows, positives, topk, max_neighbors,
                                               backend, exclude_existing, search_chunk)
        out_i.append(pi), out_j.append(pj), out_sim.append(sim), out_s.append(s[ok][q])
        scores.append(score), thresholds.append(thr)
        capped += cap
    score = torch.cat(scores) if scores else rows.new_zeros(0)
    accepted = score > threshold
    n_acc = int(accepted.sum())
    diag = {f"cos_gstar_{k}": float(v / n_acc) if n_acc else float("nan") for k, v in zip("apn", cos_sums)}
    cat = lambda xs, empty: torch.cat(xs) if xs else empty
    empty = anchors.new_zeros(0)
    return MiningResult(cat(out_i, empty), cat(out_j, empty), anchors, accepted, score,
                        cat(thresholds, rows.new_zeros(0)), n_acc, capped, cat(out_s, rows.new_zeros(0)),
                        cat(out_sim, rows.new_zeros(0)), diag)


@torch.no_grad()
def mine_knn(anchors: torch.Tensor, bank, positives: PositiveSets, *, radius: float, topk: int | None = None,
             chunk_size: int = 4096, backend: str = "auto", max_neighbors: int = 64,
             exclude_existing: bool = True, search_chunk: int = 256) -> MiningResult:
    """The baseline: pair each anchor with the bank entries j != i within Euclidean distance r of v_i.

    topk: at most this many, nearest first (None: all within r among the max_neighbors nearest).
    """
    rows = as_bank_tensor(bank)
    anchors = _check_common(anchors, rows, positives, topk, chunk_size, max_neighbors, search_chunk)
    cos = 1.0 - check_radius(radius) ** 2 / 2
    out_i, out_j, out_sim, capped = [], [], [], 0
    for start in range(0, anchors.numel(), chunk_size):
        anc = anchors[start:start + chunk_size]                                       # C
        thr = torch.full((anc.numel(),), cos, dtype=rows.dtype, device=rows.device)
        pi, pj, sim, _, cap = _neighbour_pairs(rows[anc], anc, thr, rows, positives, topk, max_neighbors,
                                               backend, exclude_existing, search_chunk)
        out_i.append(pi), out_j.append(pj), out_sim.append(sim)
        capped += cap
    empty = anchors.new_zeros(0)
    sims = torch.cat(out_sim) if out_sim else rows.new_zeros(0)
    return MiningResult(torch.cat(out_i) if out_i else empty, torch.cat(out_j) if out_j else empty, anchors,
                        torch.ones_like(anchors, dtype=torch.bool), None,
                        torch.full((anchors.numel(),), cos, dtype=rows.dtype, device=rows.device),
                        anchors.numel(), capped, sims, sims)


def _rank_within_group(keys: torch.Tensor) -> torch.Tensor:
    """Position of each element among the elements with the same key, in their current order: E -> E int64."""
    by_key = torch.sort(keys, stable=True).indices                                      # grouped, order kept
    _, counts = torch.unique_consecutive(keys[by_key], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(by_key)
    rank[by_key] = torch.arange(keys.numel(), device=keys.device) - starts.repeat_interleave(counts)
    return rank


def select_pairs(result: MiningResult, room: int, fill: str = "random",
                 generator: torch.Generator | None = None, num_samples: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate pairs of one pass that a quota with `room` new pairs left takes: -> (i, j) int64.

    fill="random": when there are more than `room` candidates, a uniform subset of `room` of them (pairs found
    from both ends may both be drawn, so fewer than `room` may be new). fill="ranked": every undirected pair once,
    in decreasing `pair_scores`, ties broken by decreasing `pair_sims`, the first `room` (num_samples: N, to key
    the pairs; defaults to the largest index + 1). fill="spread": the same order within each anchor (pairs_i),
    but round-robin across anchors: every anchor's first candidate (those in the ranked order), then every
    anchor's second, and so on.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if room < 0:
        raise ValueError(f"room must be >= 0, got {room}")
    pi, pj = result.pairs_i, result.pairs_j
    if fill == "random":
        if pi.numel() > room:
            keep = torch.randperm(pi.numel(), generator=generator, device=pi.device)[:room]
            pi, pj = pi[keep], pj[keep]
        return pi, pj
    if result.pair_scores is None or result.pair_sims is None:
        raise ValueError(f"fill={fill!r} needs the miner's pair_scores and pair_sims")
    if pi.numel() == 0:
        return pi, pj
    # two stable sorts = a lexicographic order: by score, then by similarity (both decreasing)
    order = torch.sort(result.pair_sims, descending=True, stable=True).indices
    order = order[torch.sort(result.pair_scores[order], descending=True, stable=True).indices]
    if fill == "spread":  # re-sort by the candidate's rank within its anchor; stable keeps the ranked order
        order = order[torch.sort(_rank_within_group(pi[order]), stable=True).indices]
    lo, hi = torch.minimum(pi, pj)[order], torch.maximum(pi, pj)[order]               # E' in rank order
    n = num_samples if num_samples is not None else int(hi.max()) + 1
    _, inverse = torch.unique(lo * n + hi, return_inverse=True)                       # E'
    position = torch.arange(lo.numel(), device=lo.device)
    first = torch.full((int(inverse.max()) + 1,), lo.numel(), dtype=torch.int64, device=lo.device)
    first = first.scatter_reduce(0, inverse, position, reduce="amin")                 # U: first rank of each pair
    keep = torch.sort(first).values[:room]                                            # best `room`, rank order
    return lo[keep], hi[keep]
