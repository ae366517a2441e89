"""NCA (Deep_metric's): neighbourhood component analysis restricted to each anchor's top-K neighbourhood.

Source: NCA of github bnulihaixia/Deep_metric (source document 003). On Euclidean distances, for anchor i:

    t_i = the (K+1)-th smallest distance from i to the other samples (+inf when there are at most K)
    pos_neig = positives with d < t_i, or i's nearest positive when none is that close
    neg_neig = negatives with d < t_i
    loss_i = -log( sum_{pos_neig} exp(alpha (1 - d)) / (sum_{pos_neig} + sum_{neg_neig}) ),  mean over anchors

Notation -> code: alpha -> `alpha` (16), K -> `k` (32), the source's defaults. The constant 1 (the
document's "base ... in case the float number operation happened illegally") cancels in the ratio;
logsumexp gives the same safety.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DeepMetricLoss
from .pairs import euclidean_distances, masked_logsumexp, pair_masks


class DMNCALoss(DeepMetricLoss):
    """Softmax over -alpha d within the K nearest neighbours of each anchor. alpha 16, k 32."""

    def __init__(self, alpha: float = 16.0, k: int = 32, **kwargs):
        super().__init__(**kwargs)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.alpha, self.k = float(alpha), int(k)

    def loss_dict(self, embeddings, labels, indices_tuple):
        dist = euclidean_distances(embeddings)  # B x B
        pos, neg = pair_masks(labels, indices_tuple)
        batch = dist.shape[0]
        others = dist.detach().masked_fill(~(pos | neg), float("inf"))  # B x B
        if self.k < batch:
            threshold = others.topk(self.k + 1, dim=1, largest=False).values[:, -1]  # B, +inf if too few
        else:
            threshold = torch.full_like(dist[:, 0], float("inf"))
        inside = dist.detach() < threshold.unsqueeze(1)  # B x B
        nearest_pos = F.one_hot(others.masked_fill(~pos, float("inf")).argmin(1), batch).bool() & pos
        pos_neig = torch.where((pos & inside).any(1, keepdim=True), pos & inside, nearest_pos)
        neg_neig = neg & inside
        logits = -self.alpha * dist
        lse_pos, _ = masked_logsumexp(logits, pos_neig)
        lse_all, _ = masked_logsumexp(logits, pos_neig | neg_neig)
        return self.element_dict(lse_all - lse_pos, pos.any(1) & neg.any(1))
