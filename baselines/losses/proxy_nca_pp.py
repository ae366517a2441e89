"""ProxyNCA++ (Teh et al. 2020; document 002, "ProxyNCA++").

    -log( exp(-D(x, p_y) / T) / sum_z exp(-D(x, p_z) / T) )

Unlike Proxy-NCA (proxy_nca.py) the denominator runs over ALL proxies, the true class's included, and a
low temperature T sharpens the softmax. pytorch-metric-learning's ProxyNCALoss computes exactly this with
``softmax_scale`` = 1 / T and D the squared Euclidean distance between L2-normalised embeddings and
proxies; verified against a per-sample loop in tests/test_baseline_losses_proxy.py. T = 1/9 is the paper's
setting. The paper's other changes (global max pooling, fast-moving proxies = a larger proxy learning rate)
belong to the encoder and the optimiser: the proxies' own learning rate is ``baseline.loss_lr``.
"""
from __future__ import annotations

from pytorch_metric_learning import losses

from .base import CheckedInputMixin


class ProxyNCAPlusPlusLoss(CheckedInputMixin, losses.ProxyNCALoss):
    """pml's ProxyNCALoss at temperature T (softmax_scale = 1/T) with input checks."""

    def __init__(self, num_classes: int, embedding_size: int, temperature: float = 1.0 / 9.0, **kwargs):
        if temperature <= 0:
            raise ValueError(f"ProxyNCA++: temperature must be > 0, got {temperature}")
        super().__init__(num_classes=num_classes, embedding_size=embedding_size,
                         softmax_scale=1.0 / temperature, **kwargs)
        self.num_classes = num_classes  # pml records it as 0; the label-range check needs the real value
        self.temperature = temperature
