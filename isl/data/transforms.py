"""Augmentation presets per data set, test transforms, and the two-view wrapper ISL trains on.

Sources: the instance-discrimination recipe of the reference ISL code (github ZiweiWangTHU/ISL, after
Wu et al. 2018): RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.4), RandomGrayscale(0.2),
no horizontal flip, ToTensor, Normalize. The digits recipe is ours (8 x 8 images): a small random affine
(rotation, sub-pixel translation, scale, optional shear) with bilinear resampling, then a contrast /
brightness jitter and Gaussian pixel noise; never a flip (digits are not flip-invariant). Fashion-MNIST uses
the same family with a larger zoom and shift and a horizontal flip (FASHION_PRESETS).

Inputs: torchvision data sets give PIL images; the in-memory data sets (digits, Fashion-MNIST) give a float
tensor 1 x S x S in [0, 1] (isl.data.digits, isl.data.fashion_mnist). Every transform returns a normalised
float tensor C x H x W.

The in-memory augmentation has one implementation, `augment_batch` (affine_grid / grid_sample over a whole
batch, one torch.Generator); the per-sample transform `TensorAugment` calls it on a batch of one, so the
per-sample and the batched paths draw from the same distribution.

Two paths (`data.augment_backend`, AUGMENT_BACKENDS): `batched` (what `auto` picks for every data set here) draws the
views of a whole batch of raw images on the training device (`augment_views`: augment_tensor_batch for the in-memory
data sets, isl.data.image_augment for the RGB ones, whose raw images are uint8 C x H x W tensors,
isl.data.tensor_images); `pil` keeps the per-image transform of build_transform in the DataLoader (MultiView), the
reference the batched RGB path is tested against (tests/test_data_batch_augment.py). Both read IMAGE_PRESETS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision import transforms as T

from isl.data.image_augment import ImageAugmentParams, augment_image_batch, normalize_images
from isl.data.registry import dataset_info


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the batched augmentation of in-memory grayscale images (digits, Fashion-MNIST); every
    parameter is drawn uniformly and independently per image."""

    degrees: float                  # rotation in [-degrees, degrees]
    translate_px: float             # shift of x and y in [-translate_px, translate_px] pixels of a ref_size image
    scale: tuple[float, float]      # isotropic zoom factor range (> 1 zooms in)
    shear: float                    # x-shear angle in [-shear, shear] degrees
    contrast: tuple[float, float]   # intensity multiplier range
    brightness: float               # intensity offset in [-brightness, brightness]
    noise_std: float                # std of additive Gaussian pixel noise (images in [0, 1])
    hflip: float = 0.0              # probability of a horizontal flip (never for digits)
    ref_size: int = 8               # image side translate_px refers to (shifts scale with the actual side)


DigitAugmentParams = AugmentParams  # the name under which the digits presets were introduced

DIGIT_PRESETS: dict[str, AugmentParams] = {
    "weak": AugmentParams(5.0, 0.5, (0.95, 1.05), 0.0, (0.9, 1.1), 0.0, 0.02),
    "default": AugmentParams(10.0, 1.0, (0.9, 1.1), 0.0, (0.8, 1.2), 0.05, 0.05),
    "strong": AugmentParams(15.0, 1.5, (0.8, 1.2), 10.0, (0.6, 1.4), 0.1, 0.1),
}
# Fashion-MNIST (28 x 28 garments, centred on black): a crop-like zoom and shift, a horizontal flip (garments
# are left-right symmetric classes), contrast / brightness jitter; no colour (grayscale). Chosen a priori
# from the instance-discrimination recipe (crop + photometric jitter), not tuned on test labels.
FASHION_PRESETS: dict[str, AugmentParams] = {
    "weak": AugmentParams(5.0, 2.0, (0.95, 1.2), 0.0, (0.8, 1.2), 0.05, 0.02, 0.5, 28),
    "default": AugmentParams(10.0, 3.0, (0.9, 1.5), 5.0, (0.6, 1.4), 0.1, 0.03, 0.5, 28),
    "strong": AugmentParams(15.0, 4.0, (0.8, 1.8), 10.0, (0.5, 1.5), 0.2, 0.05, 0.5, 28),
}
# data sets held in memory as float tensors 1 x S x S in [0, 1]: augmented a whole batch at once
TENSOR_PRESETS: dict[str, dict[str, AugmentParams]] = {"digits": DIGIT_PRESETS, "fashion_mnist": FASHION_PRESETS}
# RGB data sets (CIFAR, STL-10, SVHN): the reference recipe, without a flip (default) or with one (flip)
IMAGE_PRESETS: dict[str, ImageAugmentParams] = {"default": ImageAugmentParams(),
                                                "flip": ImageAugmentParams(hflip=0.5)}
PIL_PRESETS = ("none",) + tuple(IMAGE_PRESETS)
# data.augment_backend: auto (batched wherever a data set has a batched path: all of DATASETS) | batched | pil
AUGMENT_BACKENDS = ("auto", "batched", "pil")


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


def augment_batch(x: torch.Tensor, params: AugmentParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random affine + optional flip + intensity jitter + noise for a batch of grayscale images, vectorised.

    x: B x C x S x S in [0, 1]. generator: drives every draw (None -> torch's default generator); it may live
    on another device than x. Returns B x C x S x S clamped to [0, 1] (not normalised).
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects B x C x H x W, got shape {tuple(x.shape)}")
    b = x.shape[0]
    rng_device = generator.device if generator is not None else x.device
    u = torch.rand(b, 7, generator=generator, device=rng_device).to(x.device, x.dtype)    # B x 7
    noise = torch.randn(x.shape, generator=generator, device=rng_device).to(x.device, x.dtype)
    sym = 2.0 * u - 1.0                                                                    # B x 7 in [-1, 1]
    angle = sym[:, 0] * params.degrees
    translate = sym[:, 1:3] * (params.translate_px * x.shape[-1] / params.ref_size)        # B x 2 pixels
    scale = params.scale[0] + (params.scale[1] - params.scale[0]) * u[:, 3]
    shear = sym[:, 4] * params.shear
    out = affine_digits(x, angle, translate, scale, shear)                                 # B x C x S x S
    if params.hflip > 0:  # drawn after the others, so presets without a flip keep their random stream
        flip = torch.rand(b, generator=generator, device=rng_device).to(x.device) < params.hflip  # B
        out = torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out)
    contrast = params.contrast[0] + (params.contrast[1] - params.contrast[0]) * u[:, 5]
    offset = sym[:, 6] * params.brightness
    out = out * contrast.view(b, 1, 1, 1) + offset.view(b, 1, 1, 1) + params.noise_std * noise
    return out.clamp(0.0, 1.0)


def augment_tensor_batch(x: torch.Tensor, dataset: str, preset: str | AugmentParams = "default",
                         generator: torch.Generator | None = None, normalize: bool = True) -> torch.Tensor:
    """The train augmentation of an in-memory data set (TENSOR_PRESETS) on a whole batch B x C x S x S in [0, 1],
    normalised with the data set's mean / std when `normalize` (as build_transform's train transform).
    preset "none": no augmentation, only the normalisation (as build_transform's "none")."""
    if isinstance(preset, str) and _check_preset(dataset, preset) == "none":
        return _normalize(x, dataset) if normalize else x
    params = TENSOR_PRESETS[dataset][preset] if isinstance(preset, str) else preset
    out = augment_batch(x, params, generator)
    return _normalize(out, dataset) if normalize else out


def augment_digits_batch(x: torch.Tensor, generator: torch.Generator | None = None,
                         preset: str | AugmentParams = "default", normalize: bool = True) -> torch.Tensor:
    """Random affine + intensity jitter + noise for a batch of digits, vectorised.

    x: B x 1 x 8 x 8 in [0, 1] (digits items built with transform=None). generator: drives every draw
    (None -> torch's default generator); it may live on another device than x.
    Returns B x 1 x 8 x 8, normalised with the digits mean / std when `normalize` (as build_transform's
    train transform), else clamped to [0, 1].
    """
    return augment_tensor_batch(x, "digits", preset, generator, normalize)


def _normalize(x: torch.Tensor, dataset: str) -> torch.Tensor:
    info = dataset_info(dataset)
    return (x - info.mean[0]) / info.std[0]


class TensorAugment:
    """Per-sample train transform of an in-memory data set: 1 x S x S in [0, 1] -> normalised 1 x S x S
    (torch's default RNG, which DataLoader seeds per worker); the batched path draws from the same law."""

    def __init__(self, dataset: str, preset: str = "default") -> None:
        self.dataset, self.preset = dataset, _check_preset(dataset, preset)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return augment_tensor_batch(image.unsqueeze(0), self.dataset, self.preset)[0]

    def __repr__(self) -> str:
        return f"TensorAugment({self.dataset!r}, preset={self.preset!r}, {TENSOR_PRESETS[self.dataset][self.preset]})"


class TensorNormalize:
    """Test transform of an in-memory data set: 1 x S x S in [0, 1] -> (x - mean) / std."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return _normalize(image, self.dataset)

    def __repr__(self) -> str:
        return f"TensorNormalize({self.dataset!r})"


def augment_presets(dataset: str) -> tuple[str, ...]:
    """The data.augment names a data set accepts ("none" = the test transform)."""
    return ("none",) + tuple(TENSOR_PRESETS[dataset]) if dataset in TENSOR_PRESETS else PIL_PRESETS


def _check_preset(dataset: str, preset: str) -> str:
    choices = augment_presets(dataset)
    if preset not in choices:
        raise ValueError(f"unknown augmentation preset {preset!r} for {dataset}; choose one of {list(choices)}")
    return preset


def build_transform(dataset: str, train: bool, preset: str = "default") -> Callable:
    """Transform for the images a data set returns -> normalised float tensor C x H x W.

    train=False, or preset="none": test transform (ToTensor + Normalize; digits: Normalize).
    train=True: CIFAR-10/100(-20), SVHN: RandomResizedCrop(32, scale 0.2-1) + ColorJitter(0.4 x 4) +
    RandomGrayscale(0.2), no flip (IMAGE_PRESETS["default"]; "flip" adds RandomHorizontalFlip(0.5) after the crop);
    STL-10 the same at 96 px; digits / fashion_mnist: TENSOR_PRESETS[dataset][preset] ("weak" | "default" | "strong").
    """
    info = dataset_info(dataset)
    preset = _check_preset(dataset, preset)
    test_mode = not train or preset == "none"
    if dataset in TENSOR_PRESETS:
        return TensorNormalize(dataset) if test_mode else TensorAugment(dataset, preset)
    normalize = [T.ToTensor(), T.Normalize(info.mean, info.std)]
    if test_mode:
        return T.Compose(normalize)
    p = IMAGE_PRESETS[preset]
    return T.Compose([
        T.RandomResizedCrop(info.image_size, scale=p.scale, ratio=p.ratio),
        *([T.RandomHorizontalFlip(p.hflip)] if p.hflip > 0 else []),
        T.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue),
        T.RandomGrayscale(p=p.grayscale),
        *normalize,
    ])


def batched_augment(dataset: str, backend: str = "auto") -> bool:
    """Whether training draws its views on whole batches of raw images (augment_views) rather than per image in the
    DataLoader (build_transform): data.augment_backend auto | batched -> True, pil -> False. Every data set of
    DATASETS has a batched path; a data set of files without one would make auto False and batched an error."""
    dataset_info(dataset)
    if backend not in AUGMENT_BACKENDS:
        raise ValueError(f"unknown augment backend {backend!r}; choose one of {list(AUGMENT_BACKENDS)}")
    return backend != "pil"


def augment_raw_batch(x: torch.Tensor, dataset: str, preset: str = "default",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """One augmented view of a batch of raw images (isl.builders.build_raw_train_set's items), on x's device:
    digits / Fashion-MNIST B x 1 x S x S float in [0, 1] (augment_tensor_batch); RGB data sets B x 3 x H x W uint8
    (or float in [0, 1]; isl.data.image_augment). Normalised float32, as build_transform's train transform; preset
    "none": the test transform. generator: None -> the default generator of x's device."""
    if dataset in TENSOR_PRESETS:
        return augment_tensor_batch(x, dataset, preset, generator)
    info = dataset_info(dataset)
    if _check_preset(dataset, preset) == "none":
        return normalize_images(x, info.mean, info.std)
    return augment_image_batch(x, IMAGE_PRESETS[preset], info.image_size, info.mean, info.std, generator)


def augment_views(x: torch.Tensor, dataset: str, preset: str = "default", n_views: int = 2,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """n_views independent views of a batch of raw images: B x ... -> B x n_views x C x H x W (as MultiView through
    a DataLoader). RGB images: one call on the batch repeated n_views times (row v B + i is view v of image i), so
    each view [:, v] is a contiguous block of the result."""
    if dataset in TENSOR_PRESETS or n_views == 1:  # the in-memory data sets keep their per-view draws
        return torch.stack([augment_raw_batch(x, dataset, preset, generator) for _ in range(n_views)], dim=1)
    b = x.shape[0]
    views = augment_raw_batch(x.repeat(n_views, 1, 1, 1), dataset, preset, generator)   # (n_views B) x C x H x W
    return views.view(n_views, b, *views.shape[1:]).transpose(0, 1)


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
