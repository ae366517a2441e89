"""CenterNCA: NCA where the neighbours are the batch's class centres instead of the samples.

Source: CenterNCALoss of github bnulihaixia/Deep_metric (source document 003). With the batch class
means mu_c (detached: "no gradient on centers") and squared Euclidean distances D(i, c) = ||x_i - mu_c||^2,

    loss_i = -log( exp(-alpha D(i, y_i)) / sum_c exp(-alpha D(i, c)) ),     loss = mean over samples

Notation -> code: alpha -> `alpha` (16, the source's default). The source subtracts a `base` inside the
exponentials for floating-point safety; log_softmax does the same exactly. A batch with a single class
has no negative centre and gives the zero loss.
"""
from __future__ import annotations

import torch

from .base import DeepMetricLoss
from .pairs import class_centers, class_onehot, squared_distances


class CenterNCALoss(DeepMetricLoss):
    """Softmax over -alpha * squared distance to the (detached) batch class centres. alpha 16."""

    def __init__(self, alpha: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def loss_dict(self, embeddings, labels, indices_tuple):
        self.refuse_indices_tuple(indices_tuple)
        onehot, _ = class_onehot(labels)  # B x C
        centers = class_centers(embeddings, onehot).detach()  # C x d
        log_prob = torch.log_softmax(-self.alpha * squared_distances(embeddings, centers), dim=1)  # B x C
        losses = -(log_prob * onehot).sum(1)  # B
        keep = torch.full_like(losses, onehot.shape[1] > 1, dtype=torch.bool)
        return self.element_dict(losses, keep)
