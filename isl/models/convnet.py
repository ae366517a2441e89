"""A small ConvNet for 8x8 digits (scikit-learn's bundled handwritten digits).

Three 3x3 conv blocks with BatchNorm (8x8 -> 8x8 -> 4x4 -> 2x2), global average pool, out_dim = width * 4.
Small enough that hundreds of epochs over 1,437 digits run in minutes on two CPU cores.
"""
from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallConvNet(nn.Module):
    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            *_block(in_channels, width), *_block(width, width),
            nn.MaxPool2d(2),                                    # 8 -> 4
            *_block(width, 2 * width), *_block(2 * width, 2 * width),
            nn.MaxPool2d(2),                                    # 4 -> 2
            *_block(2 * width, 4 * width),
        )
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)                                    # B x 4w x h/4 x w/4
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # B x out_dim
