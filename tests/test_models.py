"""Every encoder: right output shape, unit-norm rows, and a finite gradient on every parameter (timm style)."""
import pytest
import torch

from isl.models import TRUNKS, build_encoder

SHAPES = {"convnet": (1, 8), "convnet_gn": (1, 8), "resnet18": (3, 32), "resnet50": (3, 32), "resnet18_stl": (3, 96),
          "resnet50_stl": (3, 96)}


@pytest.mark.parametrize("arch", sorted(TRUNKS))
def test_every_parameter_gets_a_finite_gradient(arch):
    torch.manual_seed(0)
    channels, size = SHAPES[arch]
    model = build_encoder(arch, low_dim=16, in_channels=channels)
    x = torch.randn(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{arch}: {name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{arch}: {name} has a non-finite gradient"


def test_cifar_stem_keeps_resolution_and_stl_stem_pools():
    m18 = build_encoder("resnet18", 8)
    assert m18.trunk.stem(torch.randn(1, 3, 32, 32)).shape[-1] == 32
    stl = build_encoder("resnet18_stl", 8)
    assert stl.trunk.stem(torch.randn(1, 3, 96, 96)).shape[-1] == 48


def test_unknown_arch_names_the_choices():
    with pytest.raises(ValueError, match="resnet18"):
        build_encoder("resnet81")
