"""Proxy-NCA (Movshovitz-Attias et al. 2017; document 002, "Proxy-NCA").

    -log( exp(-D(x, p_y)) / sum_{z != y} exp(-D(x, p_z)) ) = D(x, p_y) + logsumexp_{z != y} -D(x, p_z)

One learnable proxy per class; the denominator runs over the OTHER classes' proxies only, as the document
(and the paper) writes it, so the loss is unbounded below and can be negative. pytorch-metric-learning's
ProxyNCALoss keeps the true class in the denominator (that is the ProxyNCA++ form, proxy_nca_pp.py), so it is
not this formula (tested); the document's version is written here.
Notation -> code: D -> ``distance`` (squared Euclidean between L2-normalised embeddings and proxies, the
paper's); p -> ``proxies`` (num_classes x embedding_size parameter, standard-normal init like pml's).
Reduction: mean over samples. Needs num_classes >= 2.
"""
from __future__ import annotations

import torch
from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .base import CheckedInputMixin


class ProxyNCALoss(CheckedInputMixin, losses.WeightRegularizerMixin, losses.BaseMetricLossFunction):
    def __init__(self, num_classes: int, embedding_size: int, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"ProxyNCALoss: needs num_classes >= 2 (the denominator sums over the other "
                             f"classes' proxies), got {num_classes}")
        self.num_classes, self.embedding_size = num_classes, embedding_size
        self.proxies = torch.nn.Parameter(torch.empty(num_classes, embedding_size))
        self.weight_init_func(self.proxies)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        mat = self.distance(embeddings, self.proxies.to(embeddings.dtype))  # D(x, p_z): B x C
        logits = mat if self.distance.is_inverted else -mat  # B x C
        own = torch.nn.functional.one_hot(labels, self.num_classes).bool()  # B x C
        positive = -logits[own]  # D(x, p_y): B
        others = torch.logsumexp(logits.masked_fill(own, c_f.neg_inf(logits.dtype)), dim=1)  # B
        weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)  # B (1 without miner)
        loss_dict = {"loss": {"losses": (positive + others) * weights,
                              "indices": c_f.torch_arange_from_size(embeddings), "reduction_type": "element"}}
        self.add_weight_regularization_to_loss_dict(loss_dict, self.proxies)
        return loss_dict

    def get_default_distance(self):
        return LpDistance(power=2)
