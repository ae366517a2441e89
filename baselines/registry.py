"""Config name -> loss class for every supervised baseline, and the one function that builds them.

``PAPER_LOSSES``: the 20 losses of document 002 (15 pair-based, 5 proxy-based), named as there in snake case.
``LOSSES``: those merged with ``baselines.deep_metric.DEEP_METRIC_LOSSES`` (the Deep_metric family, document
003) when that package is present; a name defined twice is an error, never a silent override.
Losses with one learnable proxy per class (PROXY_LOSSES) need ``num_classes`` and ``embedding_size``;
``build_loss`` passes those two to any class whose constructor takes them, and drops them otherwise.
"""
from __future__ import annotations

import difflib
import inspect

from . import losses as L

PAPER_LOSSES: dict[str, type] = {
    # pair-based
    "contrastive": L.ContrastiveLoss,
    "binomial_deviance": L.BinomialDevianceLoss,
    "triplet": L.TripletLoss,
    "improved_triplet": L.ImprovedTripletLoss,
    "batch_hard_triplet": L.BatchHardTripletLoss,
    "hierarchical_triplet": L.HierarchicalTripletLoss,
    "angular": L.AngularLoss,
    "quadruplet": L.QuadrupletLoss,
    "n_pair": L.NPairLoss,
    "lifted_structured": L.LiftedStructuredLoss,
    "histogram": L.HistogramLoss,
    "ranked_list": L.RankedListLoss,
    "soft_nearest_neighbor": L.SoftNearestNeighborLoss,
    "multi_similarity": L.MultiSimilarityLoss,
    "circle": L.CircleLoss,
    # proxy-based
    "magnet": L.MagnetLoss,
    "clustering": L.ClusteringLoss,
    "proxy_nca": L.ProxyNCALoss,
    "proxy_nca_pp": L.ProxyNCAPlusPlusLoss,
    "proxy_anchor": L.ProxyAnchorLoss,
}

# Losses with learnable per-class proxies (probe.py initialises them at the class means).
PROXY_LOSSES = ("proxy_nca", "proxy_nca_pp", "proxy_anchor")


def merge_registries(first: dict[str, type], second: dict[str, type]) -> dict[str, type]:
    """{**first, **second}, refusing names present in both."""
    clash = sorted(set(first) & set(second))
    if clash:
        raise ValueError(f"loss names defined twice: {clash}; rename them in baselines/deep_metric "
                         "(e.g. a 'dm_' prefix) so that a config name means one loss")
    return {**first, **second}


def _deep_metric_losses() -> dict[str, type]:
    try:
        from .deep_metric import DEEP_METRIC_LOSSES
    except ImportError as err:  # the package (or its dict) is absent: the paper losses stand alone
        if err.name not in ("baselines.deep_metric", None) and "DEEP_METRIC_LOSSES" not in str(err):
            raise  # a broken import inside the package must not pass silently
        return {}
    return dict(DEEP_METRIC_LOSSES)


DEEP_METRIC_LOSSES: dict[str, type] = _deep_metric_losses()
LOSSES: dict[str, type] = merge_registries(PAPER_LOSSES, DEEP_METRIC_LOSSES)


class UnknownNameError(KeyError):
    """An unknown registry name; str() is the plain message (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0])


def unknown_name_error(kind: str, name: str, valid) -> UnknownNameError:
    """The error for an unknown name: the closest valid choice (difflib) and the list of all of them."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Valid names: {', '.join(valid)}")


def required_arguments(cls: type) -> dict[str, bool]:
    """For num_classes and embedding_size: {name: required?} of those that cls's constructor takes."""
    params = inspect.signature(cls.__init__).parameters
    return {arg: params[arg].default is inspect.Parameter.empty
            for arg in ("num_classes", "embedding_size") if arg in params}


def build_loss(name: str, num_classes: int | None = None, embedding_size: int | None = None, **kwargs):
    """Instantiate LOSSES[name](**kwargs), adding num_classes / embedding_size where the class takes them.

    Raises UnknownNameError (a KeyError) that lists the valid names and the closest one, and ValueError when
    a loss that needs num_classes or embedding_size (proxies, the hierarchical class tree) did not get it.
    """
    if name not in LOSSES:
        raise unknown_name_error("loss", name, LOSSES)
    cls = LOSSES[name]
    given = {"num_classes": num_classes, "embedding_size": embedding_size}
    for arg, required in required_arguments(cls).items():
        if given[arg] is not None:
            kwargs.setdefault(arg, given[arg])
        elif required and arg not in kwargs:
            raise ValueError(f"loss {name!r} needs {arg}=... (its state is sized by the number of classes / the "
                             "embedding size); build_loss passes it when given")
    return cls(**kwargs)
