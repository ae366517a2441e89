"""One loss per file; see each module's docstring for its formula, source and defaults."""
from .angular import AngularLoss
from .base import CheckedInputMixin, check_batch
from .batch_hard_triplet import BatchHardTripletLoss
from .binomial_deviance import BinomialDevianceLoss
from .circle import CircleLoss
from .clustering import ClusteringLoss
from .contrastive import ContrastiveLoss
from .hierarchical_triplet import HierarchicalTripletLoss
from .histogram import HistogramLoss
from .improved_triplet import ImprovedTripletLoss
from .lifted_structured import LiftedStructuredLoss
from .magnet import MagnetLoss
from .multi_similarity import MultiSimilarityLoss
from .n_pair import NPairLoss
from .proxy_anchor import ProxyAnchorLoss
from .proxy_nca import ProxyNCALoss
from .proxy_nca_pp import ProxyNCAPlusPlusLoss
from .quadruplet import QuadrupletLoss
from .ranked_list import RankedListLoss
from .soft_nearest_neighbor import SoftNearestNeighborLoss
from .triplet import TripletLoss

__all__ = [
    "AngularLoss", "BatchHardTripletLoss", "BinomialDevianceLoss", "CheckedInputMixin", "CircleLoss",
    "ClusteringLoss", "ContrastiveLoss", "HierarchicalTripletLoss", "HistogramLoss", "ImprovedTripletLoss",
    "LiftedStructuredLoss", "MagnetLoss", "MultiSimilarityLoss", "NPairLoss", "ProxyAnchorLoss", "ProxyNCALoss",
    "ProxyNCAPlusPlusLoss", "QuadrupletLoss", "RankedListLoss", "SoftNearestNeighborLoss", "TripletLoss",
    "check_batch",
]
