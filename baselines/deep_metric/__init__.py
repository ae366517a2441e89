"""The loss family of github bnulihaixia/Deep_metric (source document 003) as pytorch-metric-learning losses.

Every loss is a `pytorch_metric_learning.losses.BaseMetricLossFunction` called as
`loss(embeddings B x d, labels B, indices_tuple=None) -> scalar`, vectorised over the B x B pair matrix
(no loop over samples), for any label counts; see base.py for the shared conventions (rows without a
positive or a negative contribute nothing; an empty batch gives a zero loss with a zero gradient) and
sampling.py for the seeded random selections. `DEEP_METRIC_LOSSES` maps config names to classes; names
that would clash with the survey's losses carry a `dm_` prefix.
"""
from __future__ import annotations

from .a_batch_all import ABatchAllLoss
from .a_hard_pair import AHardPairLoss
from .a_triplet import ATripletLoss
from .batch_all import BatchAllLoss
from .batch_hard import BatchHardLoss
from .bdw_dist_weight_neighbour import BDWNeighbourLoss
from .bin_deviance_branch import BinDevianceBranchLoss
from .center import DMCenterLoss
from .center_nca import CenterNCALoss
from .center_pair import CenterPairLoss
from .cluster_nca import ClusterNCALoss
from .contrastive import DMContrastiveLoss
from .dist_weight import DistWeightLoss
from .dist_weight_contrastive import DistWeightContrastiveLoss
from .dist_weight_neighbour import DistWeightNeighbourLoss
from .distance_match import DistanceMatchLoss
from .gaussian_lda import GaussianLDALoss
from .gaussian_metric import GaussianMetricLoss
from .nca import DMNCALoss
from .triplet import DMTripletLoss

DEEP_METRIC_LOSSES: dict[str, type] = {
    "batch_all": BatchAllLoss,
    "a_batch_all": ABatchAllLoss,
    "a_hard_pair": AHardPairLoss,
    "a_triplet": ATripletLoss,
    "dm_triplet": DMTripletLoss,
    "dm_batch_hard": BatchHardLoss,
    "bin_deviance_branch": BinDevianceBranchLoss,
    "dm_center": DMCenterLoss,
    "center_nca": CenterNCALoss,
    "center_pair": CenterPairLoss,
    "cluster_nca": ClusterNCALoss,
    "dm_contrastive": DMContrastiveLoss,
    "dist_weight": DistWeightLoss,
    "dist_weight_contrastive": DistWeightContrastiveLoss,
    "dist_weight_neighbour": DistWeightNeighbourLoss,
    "bdw_dist_weight_neighbour": BDWNeighbourLoss,
    "distance_match": DistanceMatchLoss,
    "gaussian_lda": GaussianLDALoss,
    "gaussian_metric": GaussianMetricLoss,
    "dm_nca": DMNCALoss,
}

__all__ = ["DEEP_METRIC_LOSSES"] + sorted(cls.__name__ for cls in DEEP_METRIC_LOSSES.values())
