"""tools/export.py: the exported encoder loads strictly into torchvision's ResNet (after the documented stem
surgery) and into our own Encoder, and gives the same outputs as the trained model."""
import json

import pytest
import torch
import torch.nn.functional as F

from isl.checkpoint import save_checkpoint
from isl.config import ConfigError, load_config, to_dict
from isl.models import build_encoder
from isl.models.export import load_exported, torchvision_resnet
from isl.tools import export


def _checkpoint(tmp_path, cfg_name, arch, in_channels):
    """A checkpoint of an encoder with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    cfg = load_config(cfg_name, [f"model.arch={arch}", "model.low_dim=16"])
    encoder = build_encoder(arch, 16, in_channels)
    for module in encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(path, {"config": to_dict(cfg), "model": encoder.state_dict(), "kind": "isl"})
    return encoder.eval(), path


@pytest.mark.parametrize("arch", ["resnet18", "resnet18_stl", "resnet50"])
def test_torchvision_export_matches_the_trunk(tmp_path, arch):
    encoder, ckpt = _checkpoint(tmp_path, "cifar10.yaml", arch, 3)
    x = torch.randn(2, 3, 32, 32)
    out = tmp_path / "tv.pt"
    export.main(["--ckpt", str(ckpt), "--out", str(out), "--format", "torchvision"])
    model = torchvision_resnet(arch).eval()
    model.load_state_dict(torch.load(out, weights_only=True))  # strict
    with torch.no_grad():
        torch.testing.assert_close(model(x), encoder.trunk(x), atol=1e-5, rtol=1e-5)
    # the same by hand, as the docstring tells a user (CIFAR stem only)
    if arch == "resnet18":
        import torchvision
        manual = torchvision.models.resnet18(weights=None)
        manual.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        manual.maxpool = torch.nn.Identity()
        manual.fc = torch.nn.Identity()
        manual.load_state_dict(torch.load(out, weights_only=True))
        with torch.no_grad():
            torch.testing.assert_close(manual.eval()(x), encoder.trunk(x), atol=1e-5, rtol=1e-5)


def test_torchvision_export_with_head_is_the_encoder(tmp_path):
    encoder, ckpt = _checkpoint(tmp_path, "cifar10.yaml", "resnet18", 3)
    out = tmp_path / "tv_head.pt"
    res = export.main(["--ckpt", str(ckpt.parent.parent), "--out", str(out), "--format", "torchvision",
                       "--keep-head"])
    assert res["head"] and json.loads((tmp_path / "tv_head.pt.json").read_text())["low_dim"] == 16
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(F.normalize(load_exported(out)(x), dim=1), encoder(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg_name,arch,channels,size", [("digits.yaml", "convnet", 1, 8),
                                                          ("cifar10.yaml", "resnet18", 3, 32)])
def test_isl_export_round_trip(tmp_path, cfg_name, arch, channels, size):
    encoder, ckpt = _checkpoint(tmp_path, cfg_name, arch, channels)
    out = tmp_path / "enc.pt"
    export.main(["--ckpt", str(ckpt), "--out", str(out)])
    again = build_encoder(arch, 16, channels).eval()
    again.load_state_dict(torch.load(out, weights_only=True))  # strict
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        torch.testing.assert_close(again(x), encoder(x), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(load_exported(out)(x), encoder(x), atol=1e-6, rtol=1e-6)


def test_convnet_has_no_torchvision_format(tmp_path):
    _, ckpt = _checkpoint(tmp_path, "digits.yaml", "convnet", 1)
    with pytest.raises(ConfigError, match="no torchvision counterpart"):
        export.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "x.pt"), "--format", "torchvision"])
