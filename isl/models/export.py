"""The encoder alone, for use outside this project: as our own `Encoder` or as torchvision's ResNet.

Formats (`tools/export.py --format`):

* ``isl``: `Encoder.state_dict()` (trunk + projection head), loads strictly into
  `build_encoder(arch, low_dim, in_channels)`; its output is the unit-norm low_dim feature the evaluation uses.
* ``torchvision``: the ResNet trunk under torchvision's key names (`conv1`, `bn1`, `layer1.0.conv1`, ...,
  `downsample.0/1` for our `shortcut.0/1`). torchvision's ResNet has an ImageNet stem (7x7 stride-2 conv +
  3x3 stride-2 max-pool); ours keeps small images large, so the model needs the same stem before loading:

      model = torchvision.models.resnet18(weights=None)
      model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)  # CIFAR / STL stem: 3x3, stride 1
      model.maxpool = nn.Identity()          # resnet18 / resnet50 (CIFAR stem); nn.MaxPool2d(2) for *_stl
      model.fc = nn.Identity()               # head dropped: the output is the pooled 512 (2048) trunk feature
      model.load_state_dict(torch.load("encoder.pt", weights_only=True))  # strict

  `torchvision_resnet(arch, in_channels, head_dim)` does exactly this. With `--keep-head` the projection head
  is kept as `fc` (`model.fc = nn.Linear(512, low_dim)`); torchvision's forward does not L2-normalise, so
  `F.normalize(model(x), dim=1)` equals our encoder's output. `load_exported(path)` rebuilds either model
  from the OUT.json written beside the file.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from .encoder import TRUNKS

TORCHVISION_ARCHS = {"resnet18": ("resnet18", "cifar"), "resnet50": ("resnet50", "cifar"),
                     "resnet18_stl": ("resnet18", "stl"), "resnet50_stl": ("resnet50", "stl")}
FORMATS = ("isl", "torchvision")


def _torchvision_key(key: str) -> str:
    """One trunk key (without 'trunk.') -> torchvision's name; e.g. stages.1.0.shortcut.0.weight ->
    layer2.0.downsample.0.weight, stem.1.running_mean -> bn1.running_mean."""
    key = re.sub(r"^stem\.0\.", "conv1.", key)
    key = re.sub(r"^stem\.1\.", "bn1.", key)
    key = re.sub(r"^stages\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}.", key)
    return key.replace(".shortcut.", ".downsample.")


def to_torchvision(encoder_state: dict[str, torch.Tensor], arch: str,
                   keep_head: bool = False) -> dict[str, torch.Tensor]:
    """Our Encoder's state_dict -> a state_dict for `torchvision_resnet(arch, ..., head_dim)`."""
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"model.arch {arch!r} has no torchvision counterpart (choices: "
                         f"{', '.join(TORCHVISION_ARCHS)}); export it with --format isl")
    out = {}
    for key, value in encoder_state.items():
        if key.startswith("trunk."):
            out[_torchvision_key(key[len("trunk."):])] = value
        elif key.startswith("head.") and keep_head:
            out["fc." + key[len("head."):]] = value
        elif not key.startswith("head."):
            raise ValueError(f"unexpected encoder key {key!r}: not a trunk or head parameter")
    return out


def torchvision_resnet(arch: str, in_channels: int = 3, head_dim: int | None = None) -> nn.Module:
    """torchvision's ResNet with our stem (3x3 stride-1 conv; no max-pool, or a 2x2 one for *_stl) and `fc` =
    Identity (head_dim None) or Linear(out, head_dim); untrained, ready for `load_state_dict`."""
    import torchvision

    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"model.arch {arch!r} has no torchvision counterpart; choose one of "
                         f"{', '.join(TORCHVISION_ARCHS)}")
    name, stem = TORCHVISION_ARCHS[arch]
    model = getattr(torchvision.models, name)(weights=None)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity() if stem == "cifar" else nn.MaxPool2d(2)
    features = model.fc.in_features
    model.fc = nn.Identity() if head_dim is None else nn.Linear(features, head_dim)
    return model


def export_state(encoder_state: dict[str, torch.Tensor], arch: str, fmt: str = "isl",
                 keep_head: bool = False) -> dict[str, torch.Tensor]:
    """The exported state_dict of one format (see the module docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if arch not in TRUNKS:
        raise ValueError(f"unknown model.arch {arch!r}; choose one of {', '.join(TRUNKS)}")
    if fmt == "torchvision":
        return to_torchvision(encoder_state, arch, keep_head)
    return {k: v for k, v in encoder_state.items()}


def load_exported(path) -> nn.Module:
    """The model an exported file loads into (strictly), from the OUT.json written beside it; in eval mode."""
    import json
    from pathlib import Path

    from .encoder import build_encoder

    path = Path(path)
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    if meta["format"] == "isl":
        model = build_encoder(meta["arch"], meta["low_dim"], meta["in_channels"])
    else:
        model = torchvision_resnet(meta["arch"], meta["in_channels"], meta["low_dim"] if meta["head"] else None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
