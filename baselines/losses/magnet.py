"""Magnet loss (Rippel et al. 2016, "Metric Learning with Adaptive Density Discrimination"; document 000).

    L = 1/(MD) sum_m sum_d -log( exp(-||f(x_d^m) - mu_m||^2 / (2 sigma^2) - alpha)
                                 / sum_{mu: c(mu) != c(f(x_d^m))} exp(-||f(x_d^m) - mu||^2 / (2 sigma^2)) )
    mu_m = 1/D sum_d f(x_d^m),   sigma^2 = 1/(MD - 1) sum_m sum_d ||f(x_d^m) - mu_m||^2

A batch holds M clusters of D samples. mu_m are the batch's cluster means, sigma^2 ONE variance shared by the
whole batch, alpha the gap between a sample's own cluster and the impostor clusters; the denominator runs
over the clusters of OTHER classes only. The document's reference code normalises by 2 (sigma^2)^2 -- it
squares the variance; the formula does not, and this implementation follows the formula (tested against a
loop that uses 1 / (2 sigma^2)). The paper (and the document's code) clip each sample's loss at 0, the
hinge {.}_+; the document's formula has none, so it is an option, on by default: without it the loss is
unbounded below once impostors are far (``hinge=False`` gives the plain formula).
Clusters: with ``samples_per_cluster`` = D the batch must be M consecutive runs of D samples of one class
each (what baselines.samplers.MagnetBatchSampler yields, and the document's code assumes); without it every
class of the batch is one cluster. Samples with no impostor cluster (one-class batches) are left out.
Notation -> code: alpha -> ``alpha`` (1.0, the document's code); sigma^2 -> ``variance`` (clamped at
``min_variance`` so duplicate embeddings do not divide by 0); D -> ``samples_per_cluster``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.utils import common_functions as c_f

from .base import CheckedInputMixin


class MagnetLoss(CheckedInputMixin, losses.BaseMetricLossFunction):
    def __init__(self, alpha: float = 1.0, samples_per_cluster: int | None = None, hinge: bool = True,
                 min_variance: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.samples_per_cluster, self.hinge = alpha, samples_per_cluster, hinge
        self.min_variance = min_variance

    def clusters(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cluster id of each sample: B, class of each cluster: M)."""
        d = self.samples_per_cluster
        if d is None:
            cluster_class, cluster = torch.unique(labels, return_inverse=True)
            return cluster, cluster_class
        if len(labels) % d != 0:
            raise ValueError(f"MagnetLoss: batch of {len(labels)} is not M clusters x D={d} samples; use "
                             "MagnetBatchSampler with the same samples_per_cluster, or samples_per_cluster=None")
        runs = labels.view(-1, d)  # M x D
        if bool((runs != runs[:, :1]).any()):
            raise ValueError(f"MagnetLoss: each run of {d} consecutive samples must be one cluster of one class; "
                             "the batch is not ordered cluster by cluster (use MagnetBatchSampler, shuffle=False)")
        return torch.arange(len(labels), device=labels.device) // d, runs[:, 0]

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        c_f.indices_tuple_not_supported(indices_tuple)
        cluster, cluster_class = self.clusters(labels)  # B, M
        num = len(cluster_class)
        count = torch.bincount(cluster, minlength=num).to(embeddings.dtype)  # M
        means = embeddings.new_zeros(num, embeddings.shape[1]).index_add(0, cluster, embeddings)
        means = means / count.unsqueeze(1)  # mu: M x d
        sq_dist = torch.cdist(embeddings, means).pow(2)  # ||f - mu||^2: B x M
        own = sq_dist.gather(1, cluster.unsqueeze(1)).squeeze(1)  # B
        variance = (own.sum() / (len(labels) - 1)).clamp(min=self.min_variance)  # sigma^2, shared
        logits = -sq_dist / (2 * variance)  # B x M
        impostor = cluster_class.unsqueeze(0) != labels.unsqueeze(1)  # B x M
        log_den = torch.logsumexp(logits.masked_fill(~impostor, c_f.neg_inf(logits.dtype)), dim=1)  # B
        per_sample = own / (2 * variance) + self.alpha + log_den  # -log(num / den): B
        if self.hinge:
            per_sample = F.relu(per_sample)
        keep = impostor.any(dim=1)  # B
        if not bool(keep.any()):
            return self.zero_losses()
        return {"loss": {"losses": per_sample[keep], "indices": torch.nonzero(keep).squeeze(1),
                         "reduction_type": "element"}}
