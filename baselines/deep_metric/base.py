"""Common base of the Deep_metric losses: pml's contract, input checks, and the loss-dict conventions.

Source: github bnulihaixia/Deep_metric (source document 003). Every loss here is a
`pytorch_metric_learning.losses.BaseMetricLossFunction`, called as `loss(embeddings B x d, labels B,
indices_tuple=None) -> scalar`; `compute_loss` returns pml's loss dict so pml's reducers compose.

Conventions shared by the family (the source assumes equal class counts and leaves these open):
- A row (anchor) that has no positive or no negative contributes nothing: it is left out of the loss dict.
  A valid row whose selection comes out empty (e.g. no hard negative passes the rule) contributes a zero
  loss but is counted, which is the source's `sum(row losses) / n` with skipped rows.
- With no contributing row at all, the loss is pml's zero loss `sum(embeddings * 0)`: value 0, gradient 0.
- Each loss fixes its own metric (Euclidean distance or inner product, as in the source), so pml's
  `distance=` argument is refused rather than silently ignored.
- The computation runs in float32 (or float64) outside autocast, whatever the embeddings' precision.
"""
from __future__ import annotations

import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction

from baselines.losses.base import check_batch


class DeepMetricLoss(BaseMetricLossFunction):
    """Base class: validates the batch, refuses `distance=` and `ref_emb`, and builds pml loss dicts."""

    def __init__(self, **kwargs):
        if "distance" in kwargs:
            raise ValueError(f"{type(self).__name__} fixes its own metric as the Deep_metric source does; "
                             "remove the distance= argument")
        super().__init__(**kwargs)

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        check_batch(embeddings, labels, None, type(self).__name__)
        if ref_emb is not None or ref_labels is not None:
            raise ValueError(f"{type(self).__name__} compares the batch with itself; ref_emb / ref_labels "
                             "are not supported, pass them as part of the batch instead")
        return super().forward(embeddings, labels, indices_tuple)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        # The pair geometry runs in float32 at least, outside autocast: half-precision distances of unit
        # vectors lose the small gaps the selection rules compare, and the sqrt clamp (1e-12) underflows.
        if embeddings.dtype in (torch.float16, torch.bfloat16):
            embeddings = embeddings.float()
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.loss_dict(embeddings, labels, indices_tuple)

    def loss_dict(self, embeddings: torch.Tensor, labels: torch.Tensor, indices_tuple) -> dict:
        """The loss's own computation; returns pml's loss dict. embeddings: B x d, labels: B."""
        raise NotImplementedError

    def refuse_indices_tuple(self, indices_tuple) -> None:
        """For the losses defined on class centres, where a miner's pairs have no meaning."""
        if indices_tuple is not None:
            raise ValueError(f"{type(self).__name__} works on class centres and does not take a miner's "
                             "indices_tuple; use it without a miner")

    def element_dict(self, losses: torch.Tensor, keep: torch.Tensor) -> dict:
        """Loss dict of per-row ('element') losses. losses, keep: B; rows where keep is False are left out."""
        if not bool(keep.any()):  # one sync per step: the reducer needs to know whether anything is left
            return self.zero_losses()
        indices = torch.arange(losses.shape[0], device=losses.device)[keep]
        return {"loss": {"losses": losses[keep], "indices": indices, "reduction_type": "element"}}

    def triplet_dict(self, losses: torch.Tensor, keep: torch.Tensor) -> dict:
        """Loss dict of per-triplet losses. losses, keep: B x B x B indexed [anchor, positive, negative]."""
        if not bool(keep.any()):
            return self.zero_losses()
        anchors, positives, negatives = torch.where(keep)
        return {"loss": {"losses": losses[keep], "indices": (anchors, positives, negatives),
                         "reduction_type": "triplet"}}

    def scalar_dict(self, loss: torch.Tensor) -> dict:
        """Loss dict of a loss that is already one number for the batch."""
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}
