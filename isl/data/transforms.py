"""Augmentation presets per data set, test transforms, and the two-view wrapper ISL trains on.

Sources: the instance-discrimination recipe of the reference ISL code (github ZiweiWangTHU/ISL, after
Wu et al. 2018): RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.4), RandomGrayscale(0.2),
no horizontal flip, ToTensor, Normalize. The digits recipe is ours (8 x 8 images): a small random affine
(rotation, sub-pixel translation, scale, optional shear) with bilinear resampling, then a contrast /
brightness jitter and Gaussian pixel noise; never a flip (digits are not flip-invariant).

Inputs: torchvision data sets give PIL images; digits give a float tensor 1 x 8 x 8 in [0, 1]
(isl.data.digits). Every transform returns a normalised float tensor C x H x W.

The digits augmentation has one implementation, `augment_digits_batch` (affine_grid / grid_sample over
a whole batch, one torch.Generator); the per-sample transform `DigitsAugment` calls it on a batch of
one, so the per-sample and the batched paths draw from the same distribution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision import transforms as T

from isl.data.registry import dataset_info


@dataclass(frozen=True)
class DigitAugmentParams:
    """Ranges of the digits augmentation; every parameter is drawn uniformly and independently per image."""

    degrees: float                  # rotation in [-degrees, degrees]
    translate_px: float             # shift of x and y in [-translate_px, translate_px] pixels
    scale: tuple[float, float]      # isotropic zoom factor range
    shear: float                    # x-shear angle in [-shear, shear] degrees
    contrast: tuple[float, float]   # intensity multiplier range
    brightness: float               # intensity offset in [-brightness, brightness]
    noise_std: float                # std of additive Gaussian pixel noise (images in [0, 1])


DIGIT_PRESETS: dict[str, DigitAugmentParams] = {
    "weak": DigitAugmentParams(5.0, 0.5, (0.95, 1.05), 0.0, (0.9, 1.1), 0.0, 0.02),
    "default": DigitAugmentParams(10.0, 1.0, (0.9, 1.1), 0.0, (0.8, 1.2), 0.05, 0.05),
    "strong": DigitAugmentParams(15.0, 1.5, (0.8, 1.2), 10.0, (0.6, 1.4), 0.1, 0.1),
}
PIL_PRESETS = ("none", "default")


def affine_digits(x: torch.Tensor, angle_deg: torch.Tensor, translate_px: torch.Tensor,
                  scale: torch.Tensor, shear_deg: torch.Tensor) -> torch.Tensor:
    """Per-image affine warp of square images about their centre, zeros outside, bilinear.

    x: B x C x S x S; angle_deg, scale, shear_deg: B; translate_px: B x 2 (x right, y down).
    The forward map sends input point p to A p + t with A = scale * Rot(angle) @ ShearX(shear)
    (positive angle turns clockwise on screen); grid_sample needs the inverse, p = A^-1 (q - t).
    """
    b, _, h, w = x.shape
    if h != w:
        raise ValueError(f"affine_digits expects square images, got {h} x {w}")
    a = torch.deg2rad(angle_deg.to(x.dtype))
    cos, sin, sh = torch.cos(a), torch.sin(a), torch.tan(torch.deg2rad(shear_deg.to(x.dtype)))
    s = scale.to(x.dtype)
    forward = torch.stack([torch.stack([cos, cos * sh - sin], -1),
                           torch.stack([sin, sin * sh + cos], -1)], -2) * s.view(b, 1, 1)  # B x 2 x 2
    inverse = torch.linalg.inv(forward)                                                    # B x 2 x 2
    shift = translate_px.to(x.dtype) * (2.0 / w)              # pixels -> normalised units: B x 2
    offset = -(inverse @ shift.unsqueeze(-1))                                              # B x 2 x 1
    theta = torch.cat([inverse, offset], dim=-1)                                           # B x 2 x 3
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)                        # B x S x S x 2
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment_digits_batch(x: torch.Tensor, generator: torch.Generator | None = None,
                         preset: str | DigitAugmentParams = "default", normalize: bool = True) -> torch.Tensor:
    """Random affine + intensity jitter + noise for a batch of digits, vectorised.

    x: B x 1 x 8 x 8 in [0, 1] (digits items built with transform=None). generator: drives every draw
    (None -> torch's default generator); it may live on another device than x.
    Returns B x 1 x 8 x 8, normalised with the digits mean / std when `normalize` (as build_transform's
    train transform), else clamped to [0, 1].
    """
    params = DIGIT_PRESETS[_check_preset("digits", preset)] if isinstance(preset, str) else preset
    if x.dim() != 4:
        raise ValueError(f"augment_digits_batch expects B x C x H x W, got shape {tuple(x.shape)}")
    b = x.shape[0]
    rng_device = generator.device if generator is not None else x.device
    u = torch.rand(b, 7, generator=generator, device=rng_device).to(x.device, x.dtype)    # B x 7
    noise = torch.randn(x.shape, generator=generator, device=rng_device).to(x.device, x.dtype)
    sym = 2.0 * u - 1.0                                                                    # B x 7 in [-1, 1]
    angle = sym[:, 0] * params.degrees
    translate = sym[:, 1:3] * params.translate_px                                          # B x 2
    scale = params.scale[0] + (params.scale[1] - params.scale[0]) * u[:, 3]
    shear = sym[:, 4] * params.shear
    out = affine_digits(x, angle, translate, scale, shear)                                 # B x 1 x 8 x 8
    contrast = params.contrast[0] + (params.contrast[1] - params.contrast[0]) * u[:, 5]
    offset = sym[:, 6] * params.brightness
    out = out * contrast.view(b, 1, 1, 1) + offset.view(b, 1, 1, 1) + params.noise_std * noise
    out = out.clamp(0.0, 1.0)
    return _normalize_digits(out) if normalize else out


def _normalize_digits(x: torch.Tensor) -> torch.Tensor:
    info = dataset_info("digits")
    return (x - info.mean[0]) / info.std[0]


class DigitsAugment:
    """Per-sample digits train transform: 1 x 8 x 8 in [0, 1] -> normalised 1 x 8 x 8 (torch's default RNG,
    which DataLoader seeds per worker)."""

    def __init__(self, preset: str = "default") -> None:
        self.preset = _check_preset("digits", preset)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return augment_digits_batch(image.unsqueeze(0), None, self.preset)[0]

    def __repr__(self) -> str:
        return f"DigitsAugment(preset={self.preset!r}, {DIGIT_PRESETS[self.preset]})"


class DigitsNormalize:
    """Digits test transform: 1 x 8 x 8 in [0, 1] -> (x - mean) / std."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return _normalize_digits(image)

    def __repr__(self) -> str:
        return "DigitsNormalize()"


def _check_preset(dataset: str, preset: str) -> str:
    choices = ("none",) + tuple(DIGIT_PRESETS) if dataset == "digits" else PIL_PRESETS
    if preset not in choices:
        raise ValueError(f"unknown augmentation preset {preset!r} for {dataset}; choose one of {list(choices)}")
    return preset


def build_transform(dataset: str, train: bool, preset: str = "default") -> Callable:
    """Transform for the images a data set returns -> normalised float tensor C x H x W.

    train=False, or preset="none": test transform (ToTensor + Normalize; digits: Normalize).
    train=True: CIFAR-10/100(-20), SVHN: RandomResizedCrop(32, scale 0.2-1) + ColorJitter(0.4 x 4) +
    RandomGrayscale(0.2), no flip; STL-10 the same at 96 px; digits: DIGIT_PRESETS[preset]
    ("weak" | "default" | "strong").
    """
    info = dataset_info(dataset)
    preset = _check_preset("digits" if dataset == "digits" else dataset, preset)
    test_mode = not train or preset == "none"
    if dataset == "digits":
        return DigitsNormalize() if test_mode else DigitsAugment(preset)
    normalize = [T.ToTensor(), T.Normalize(info.mean, info.std)]
    if test_mode:
        return T.Compose(normalize)
    return T.Compose([
        T.RandomResizedCrop(info.image_size, scale=(0.2, 1.0)),
        T.ColorJitter(0.4, 0.4, 0.4, 0.4),
        T.RandomGrayscale(p=0.2),
        *normalize,
    ])


class MultiView:
    """n_views independent draws of a transform, stacked: image -> n_views x C x H x W.

    A DataLoader then yields images as B x n_views x C x H x W (ISL uses two views of each image).
    """

    def __init__(self, transform: Callable, n_views: int = 2) -> None:
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.transform = transform
        self.n_views = n_views

    def __call__(self, image) -> torch.Tensor:
        return torch.stack([self.transform(image) for _ in range(self.n_views)])

    def __repr__(self) -> str:
        return f"MultiView(n_views={self.n_views}, transform={self.transform!r})"
