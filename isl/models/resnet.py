"""ResNet-18/50 (He et al., 2016) with the CIFAR stem used by instance discrimination and ISL.

CIFAR stem: a 3x3 stride-1 first convolution and no max-pool, so 32-pixel images keep their resolution in
the first stage. STL-10 variant (96-pixel images): a 3x3 stride-1 convolution followed by a 2x2 max-pool
(96 -> 48), a common compromise between the CIFAR stem and ImageNet's 7x7/2 + pool (96 -> 24).
The backbone returns the pooled trunk feature; the projection head lives in `encoder.py`.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class ResNet(nn.Module):
    """Trunk: stem -> 4 stages -> global average pool. `out_dim` = 512 * expansion."""

    def __init__(self, block: type[nn.Module], num_blocks: list[int], in_channels: int = 3,
                 stem: str = "cifar"):
        super().__init__()
        if stem not in ("cifar", "stl"):
            raise ValueError(f"stem must be 'cifar' or 'stl', got {stem!r}")
        layers = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        if stem == "stl":
            layers.append(nn.MaxPool2d(2))
        self.stem = nn.Sequential(*layers)
        in_planes, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            blocks = []
            for s in strides:
                blocks.append(block(in_planes, planes, s))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_dim = in_planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))                 # B x C x h x w
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # B x out_dim


def resnet18(in_channels: int = 3, stem: str = "cifar") -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], in_channels, stem)


def resnet50(in_channels: int = 3, stem: str = "cifar") -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], in_channels, stem)
