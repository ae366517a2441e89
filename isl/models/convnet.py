"""A small ConvNet for 8x8 digits (scikit-learn's bundled handwritten digits).

Three 3x3 conv blocks with BatchNorm (8x8 -> 8x8 -> 4x4 -> 2x2), global average pool, out_dim = width * 4.
Small enough that hundreds of epochs over 1,437 digits run in minutes on two CPU cores. `norm="group"`
(model.arch=convnet_gn) uses GroupNorm instead: no batch statistics, so a step under torchrun computes exactly
what one process computes on the global batch (SyncBatchNorm, the alternative, has no CPU kernel).
"""
from __future__ import annotations

import torch
from torch import nn


NORMS = {"batch": nn.BatchNorm2d, "group": lambda c: nn.GroupNorm(8, c)}


class SmallConvNet(nn.Module):
    def __init__(self, in_channels: int = 1, width: int = 32, norm: str = "batch"):
        super().__init__()
        make_norm = NORMS[norm]

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), make_norm(cout), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(
            *block(in_channels, width), *block(width, width),
            nn.MaxPool2d(2),                                    # 8 -> 4
            *block(width, 2 * width), *block(2 * width, 2 * width),
            nn.MaxPool2d(2),                                    # 4 -> 2
            *block(2 * width, 4 * width),
        )
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)                                    # B x 4w x h/4 x w/4
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # B x out_dim
