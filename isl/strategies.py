"""The mining strategies of an ISL round (`isl.mining.strategy`), defined once.

Each row says which stages a mining round runs before its encoder epochs, the method name written to
results.json, whether the objective has its L2 term (hard positive enhancement), and the miner: a function
(bank B = V: N x d, positives P, G, D, cfg, generator, views = the round's view features N x d or None) ->
`isl.mining.MiningResult` over every anchor.

`knn_ranked` is knn mining that fills each round's quota with the most similar pairs first (`fill`), the strongest
plain miner the GAN is compared against.

A new strategy is a miner in its own module plus one row here: `config.validate`, the round loop and the
results read everything else from this table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .gan import uninformed_logit
from .mining import MiningResult, mine_gan, mine_knn
from .stages import num_negative_candidates


@dataclass(frozen=True)
class Strategy:
    stages: tuple[str, ...]        # stages of a mining round before its encoder epochs: "gan", "mining"
    method: str                    # "method" in results.json
    uses_l2: bool                  # False: lambda is forced to 0 (NPID is L1 with P_i = {i} alone)
    miner: Callable[..., MiningResult] | None = None
    fill: str | None = None        # how a pass's candidates fill the quota; None: isl.mining.fill


def mine_with_gan(bank: torch.Tensor, positives, G, D, cfg, generator: torch.Generator,
                  views: torch.Tensor | None = None) -> MiningResult:
    """ISL: the best of n_proxies proxies g* per anchor; bank rows within r of g* if D(a, g*, n) > h."""
    m, gan = cfg.isl.mining, cfg.isl.gan
    G.eval(), D.eval()
    offset = uninformed_logit(gan.alpha, gan.loss_weights) if m.threshold_mode == "relative" else 0.0
    return mine_gan(torch.arange(len(bank), device=bank.device), bank, positives, G, D, radius=m.radius,
                    threshold=m.threshold, n_proxies=m.n_proxies, topk=m.topk or None, radius_mode=m.radius_mode,
                    adaptive_base=m.adaptive_base, num_candidates=num_negative_candidates(cfg, len(bank)),
                    chunk_size=m.chunk_size, backend=cfg.eval.backend, generator=generator,
                    positive_source=gan.positive_source, views=views, anchor=gan.anchor, logit_offset=offset)


def mine_with_knn(bank: torch.Tensor, positives, G, D, cfg, generator: torch.Generator,
                  views: torch.Tensor | None = None) -> MiningResult:
    """The baseline the paper argues against: bank rows within r of the anchor's own row (no GAN)."""
    m = cfg.isl.mining
    return mine_knn(torch.arange(len(bank), device=bank.device), bank, positives, radius=m.radius,
                    topk=m.topk or None, chunk_size=m.chunk_size, backend=cfg.eval.backend)


STRATEGIES: dict[str, Strategy] = {
    "gan": Strategy(stages=("gan", "mining"), method="isl", uses_l2=True, miner=mine_with_gan),
    "knn": Strategy(stages=("mining",), method="knn_mining", uses_l2=True, miner=mine_with_knn),
    "knn_ranked": Strategy(stages=("mining",), method="knn_ranked", uses_l2=True, miner=mine_with_knn, fill="ranked"),
    "none": Strategy(stages=(), method="npid", uses_l2=False),
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise KeyError(f"unknown isl.mining.strategy {name!r}; choices: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
