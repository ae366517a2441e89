"""Negative mining (document 002, section 1) as pytorch-metric-learning miners.

The document's three rules, for a triplet (anchor a, positive p, negative n) with distance D and margin eps:
- easy negative mining: clearly different negatives,  D(a, n) > D(a, p) + eps;
- hard negative mining: false positives,               D(a, n) <= D(a, p)  (the negative is nearer);
- semi-hard negative mining: negatives within a band,  D(a, p) < D(a, n) <= D(a, p) + eps.
pytorch-metric-learning's TripletMarginMiner(type_of_triplets="easy" | "hard" | "semihard") implements
exactly these rules over all triplets of the batch (verified against a loop in tests/test_baseline_miners.py;
its band edges are the ones written above), so it is used as is. Also registered: pml's batch-level miners
(the hardest positive and negative per anchor, "batch_hard"; its configurable "batch_easy_hard") and the
Multi-Similarity paper's pair miner ("multi_similarity").
"""
from __future__ import annotations

from functools import partial

from pytorch_metric_learning import miners

from .registry import unknown_name_error

MINERS = {
    "easy": partial(miners.TripletMarginMiner, type_of_triplets="easy"),
    "hard": partial(miners.TripletMarginMiner, type_of_triplets="hard"),
    "semihard": partial(miners.TripletMarginMiner, type_of_triplets="semihard"),
    "batch_hard": miners.BatchHardMiner,
    "batch_easy_hard": miners.BatchEasyHardMiner,
    "multi_similarity": miners.MultiSimilarityMiner,
}

DEFAULT_MARGIN = 0.2  # eps of the three triplet rules (FaceNet's; the document gives none)


def build_miner(name: str | None, **kwargs):
    """MINERS[name](**kwargs), or None for name None / "none" (every pair or triplet of the batch).

    The triplet rules ("easy", "hard", "semihard") take ``margin`` (default 0.2) and pml's ``distance``.
    """
    if name is None or name == "none":
        if kwargs:
            raise ValueError(f"miner arguments {sorted(kwargs)} given without a miner")
        return None
    if name not in MINERS:
        raise unknown_name_error("miner", name, [*MINERS, "none"])
    if name in ("easy", "hard", "semihard"):
        kwargs.setdefault("margin", DEFAULT_MARGIN)
    return MINERS[name](**kwargs)
