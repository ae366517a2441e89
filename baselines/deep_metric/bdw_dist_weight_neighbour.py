"""BDW + DistWeightNeighbour: DistWeightNeighbour on slices of the embedding, averaged over the slices.

Source: BDWNeighbourLoss of github bnulihaixia/Deep_metric (source document 003: "whether use slice? BDW,
like a batch normalization"): the embedding is cut into contiguous slices (the source's
slice=[0, 170, 341, 512]: three near-equal parts) and the mean of DistWeightNeighbour over the slices is
the loss. Reading of an open detail: each slice is L2-normalised (`normalize_slices=True`), the
"normalization" of the document, so that the constant base distance 1 means on every slice what it means
on the unit-norm whole; False uses the raw slices as the source code does. The negative draws of all
slices come from one seeded uniform tensor (S x B x B).
"""
from __future__ import annotations

from .dist_weight_neighbour import DistWeightNeighbourLoss
from .pairs import embedding_slices, euclidean_distances, pair_masks


class BDWNeighbourLoss(DistWeightNeighbourLoss):
    """Mean over `num_slices` embedding slices of DistWeightNeighbour (same constants, same defaults)."""

    def __init__(self, num_slices: int = 3, normalize_slices: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_slices, self.normalize_slices = int(num_slices), bool(normalize_slices)

    def loss_dict(self, embeddings, labels, indices_tuple):
        pos, neg = pair_masks(labels, indices_tuple)
        slices = embedding_slices(embeddings, self.num_slices, self.normalize_slices)  # S x B x w
        losses = self.row_losses(euclidean_distances(slices), pos, neg).mean(0)  # B
        return self.element_dict(losses, pos.any(1) & neg.any(1))
