"""Encoder = trunk + linear projection head to `low_dim`, L2-normalised (instance discrimination, ISL).

`build_encoder(arch, low_dim, in_channels)` is the one place config names map to networks.
"""
from __future__ import annotations

import difflib

import torch
from torch import nn
import torch.nn.functional as F

from .convnet import SmallConvNet
from .resnet import resnet18, resnet50

TRUNKS = {
    "convnet": lambda c: SmallConvNet(c),
    "convnet_gn": lambda c: SmallConvNet(c, norm="group"),  # no batch statistics (exact under torchrun)
    "resnet18": lambda c: resnet18(c, "cifar"),
    "resnet50": lambda c: resnet50(c, "cifar"),
    "resnet18_stl": lambda c: resnet18(c, "stl"),
    "resnet50_stl": lambda c: resnet50(c, "stl"),
}


class Encoder(nn.Module):
    """f_theta: images B x C x H x W -> unit-norm features B x low_dim."""

    def __init__(self, trunk: nn.Module, low_dim: int = 128):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(trunk.out_dim, low_dim)
        self.low_dim = low_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.trunk(x)), dim=1)     # B x low_dim, ||f|| = 1


def build_encoder(arch: str, low_dim: int = 128, in_channels: int = 3) -> Encoder:
    if arch not in TRUNKS:
        close = difflib.get_close_matches(arch, TRUNKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model.arch {arch!r}{hint}; choose one of {', '.join(TRUNKS)}")
    return Encoder(TRUNKS[arch](in_channels), low_dim)
