"""Proxy-Anchor loss (Kim et al. 2020; document 002, "Proxy-Anchor").

    1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} e^{alpha (D(x, p) + delta)})
  + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} e^{-alpha (D(x, p) - delta)})

With D = -cos (the document's negated similarity) these are the paper's e^{-alpha (s - delta)} and
e^{alpha (s + delta)}; P+ are the proxies with at least one positive in the batch, P all proxies.
pytorch-metric-learning's ProxyAnchorLoss computes exactly this (divisors |P+| and num_classes); verified
against a per-proxy loop in tests/test_baseline_losses_proxy.py. Defaults alpha = 32, delta = 0.1 (the
paper's). Proxies: a learnable ``proxies`` parameter, num_classes x embedding_size, Kaiming-normal init.
"""
from __future__ import annotations

from pytorch_metric_learning import losses

from .base import CheckedInputMixin


class ProxyAnchorLoss(CheckedInputMixin, losses.ProxyAnchorLoss):
    """pml's ProxyAnchorLoss with input checks (labels must lie in [0, num_classes))."""

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.1, alpha: float = 32.0,
                 **kwargs):
        super().__init__(num_classes=num_classes, embedding_size=embedding_size, margin=margin, alpha=alpha,
                         **kwargs)
