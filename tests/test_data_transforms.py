"""Augmentation presets, the batched digits augmentation and the two-view wrapper."""
from __future__ import annotations

import dataclasses

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T

from isl.data import (DATASETS, DIGIT_PRESETS, TENSOR_PRESETS, MultiView, augment_digits_batch, augment_tensor_batch,
                      build_dataset, build_transform)
from isl.data.transforms import DigitAugmentParams, affine_digits

IDENTITY = DigitAugmentParams(0.0, 0.0, (1.0, 1.0), 0.0, (1.0, 1.0), 0.0, 0.0)


def _reference_warp(img: np.ndarray, angle: float, t: tuple[float, float], scale: float, shear: float) -> np.ndarray:
    """Per-pixel loop: out(q) = bilinear sample of img at A^-1 (q - t), pixel coordinates centred on the image,
    A = scale * Rot(angle) @ ShearX(shear), zeros outside."""
    s = img.shape[0]
    a, sh = math.radians(angle), math.tan(math.radians(shear))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    inv = np.linalg.inv(scale * rot @ np.array([[1.0, sh], [0.0, 1.0]]))
    c = (s - 1) / 2.0

    def pixel(r, k):
        return img[r, k] if 0 <= r < s and 0 <= k < s else 0.0

    out = np.zeros_like(img)
    for i in range(s):
        for j in range(s):
            x, y = inv @ np.array([j - c - t[0], i - c - t[1]])
            col, row = x + c, y + c
            c0, r0 = math.floor(col), math.floor(row)
            fc, fr = col - c0, row - r0
            out[i, j] = ((1 - fr) * ((1 - fc) * pixel(r0, c0) + fc * pixel(r0, c0 + 1))
                         + fr * ((1 - fc) * pixel(r0 + 1, c0) + fc * pixel(r0 + 1, c0 + 1)))
    return out


def test_affine_matches_per_pixel_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 8, 8, generator=g, dtype=torch.float64)
    angle = torch.tensor([0.0, 12.0, -30.0, 90.0, 7.0], dtype=torch.float64)
    translate = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.3, 0.7], [0.0, 0.0], [-1.5, 0.2]], dtype=torch.float64)
    scale = torch.tensor([1.0, 0.9, 1.2, 1.0, 1.1], dtype=torch.float64)
    shear = torch.tensor([0.0, 0.0, 10.0, 0.0, -8.0], dtype=torch.float64)
    out = affine_digits(x, angle, translate, scale, shear)
    for b in range(5):
        ref = _reference_warp(x[b, 0].numpy(), float(angle[b]), tuple(translate[b].tolist()), float(scale[b]),
                              float(shear[b]))
        np.testing.assert_allclose(out[b, 0].numpy(), ref, atol=1e-9)


def test_affine_closed_forms():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    torch.testing.assert_close(affine_digits(x, zero, torch.zeros(1, 2, dtype=torch.float64), one, zero), x)
    shifted = affine_digits(x, zero, torch.tensor([[2.0, 1.0]], dtype=torch.float64), one, zero)
    expected = torch.zeros_like(x)
    expected[..., 1:, 2:] = x[..., :-1, :-2]                  # content moves 2 px right, 1 px down
    torch.testing.assert_close(shifted, expected)
    turned = affine_digits(x, 90 * one, torch.zeros(1, 2, dtype=torch.float64), one, zero)
    for i in range(8):                                          # clockwise quarter turn: out[j, 7 - i] = in[i, j]
        for j in range(8):
            assert turned[0, 0, j, 7 - i] == pytest.approx(float(x[0, 0, i, j]), abs=1e-9)


def test_batch_augmentation_contract():
    x = build_dataset("digits", "test").images[:64]                               # 64 x 1 x 8 x 8
    a = augment_digits_batch(x, torch.Generator().manual_seed(1), normalize=False)
    b = augment_digits_batch(x, torch.Generator().manual_seed(1), normalize=False)
    c = augment_digits_batch(x, torch.Generator().manual_seed(2), normalize=False)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    normed = augment_digits_batch(x, torch.Generator().manual_seed(1))
    info = DATASETS["digits"]
    torch.testing.assert_close(normed, (a - info.mean[0]) / info.std[0])
    torch.testing.assert_close(augment_digits_batch(x, None, IDENTITY, normalize=False), x)
    same = augment_digits_batch(x[:1].expand(8, -1, -1, -1), torch.Generator().manual_seed(0), normalize=False)
    assert len({tuple(v.flatten().tolist()) for v in same}) == 8                   # fresh draws per image


def test_presets_are_ordered_by_strength():
    x = build_dataset("digits", "train").images[:512]
    change = {name: (augment_digits_batch(x, torch.Generator().manual_seed(0), name, normalize=False) - x)
              .abs().mean().item() for name in ("weak", "default", "strong")}
    assert 0 < change["weak"] < change["default"] < change["strong"]


def test_batch_augmentation_bad_input():
    with pytest.raises(ValueError, match="B x C x H x W"):
        augment_digits_batch(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="strong"):
        augment_digits_batch(torch.zeros(2, 1, 8, 8), preset="huge")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_transform_shape(name):
    info = DATASETS[name]
    if info.in_memory:
        image = torch.rand(1, info.image_size, info.image_size)
    else:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (info.image_size, info.image_size, 3),
                                                                   dtype=np.uint8))
    presets = ["none"] + (list(TENSOR_PRESETS[name]) if info.in_memory else ["default"])
    for train in (True, False):
        for preset in presets:
            out = build_transform(name, train, preset)(image)
            assert out.shape == (info.in_channels, info.image_size, info.image_size)
            assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(build_transform(name, True, "none")(image), build_transform(name, False)(image))
    if info.in_memory:  # the batched augmentation's "none" is the test transform too (ISL with data.augment=none)
        torch.testing.assert_close(augment_tensor_batch(image[None], name, "none")[0], build_transform(name, False)(image))
    with pytest.raises(ValueError, match="none"):
        build_transform(name, True, "extreme")


def test_cifar_recipe_is_the_reference_one():
    steps = build_transform("cifar10", True).transforms
    kinds = [type(s) for s in steps]
    assert kinds == [T.RandomResizedCrop, T.ColorJitter, T.RandomGrayscale, T.ToTensor, T.Normalize]
    assert steps[0].size == (32, 32) and steps[0].scale == (0.2, 1.0)
    assert steps[1].brightness == steps[1].contrast == steps[1].saturation == (0.6, 1.4)
    assert steps[1].hue == (-0.4, 0.4) and steps[2].p == 0.2
    assert tuple(steps[4].mean) == (0.4914, 0.4822, 0.4465) and tuple(steps[4].std) == (0.2023, 0.1994, 0.2010)
    assert build_transform("stl10", True).transforms[0].size == (96, 96)


def test_digits_train_transform_is_random_and_picklable():
    transform = pickle.loads(pickle.dumps(build_transform("digits", True)))   # DataLoader workers pickle it
    image = build_dataset("digits", "test").images[0]
    assert not torch.equal(transform(image), transform(image))


def test_multiview_through_dataloader():
    ds = build_dataset("digits", "train", transform=MultiView(build_transform("digits", True), n_views=3))
    images, targets, indices = next(iter(DataLoader(ds, batch_size=16, shuffle=True)))
    assert images.shape == (16, 3, 1, 8, 8) and targets.shape == indices.shape == (16,)
    assert not torch.equal(images[:, 0], images[:, 1])
    with pytest.raises(ValueError, match="n_views"):
        MultiView(build_transform("digits", True), n_views=0)


def test_fashion_augmentation_flips_and_keeps_range():
    """Fashion presets: a horizontal flip with probability 1/2, shifts that scale with the image side, [0, 1]."""
    from isl.data.transforms import FASHION_PRESETS, augment_batch

    x = torch.zeros(400, 1, 16, 16)
    x[:, :, :, :4] = 1.0                                                   # a bright band on the left
    flip_only = dataclasses.replace(IDENTITY, hflip=0.5)
    out = augment_batch(x, flip_only, torch.Generator().manual_seed(0))
    flipped = out[:, 0, 0, -1] > 0.5                                       # the band moved to the right
    assert 0.4 < flipped.float().mean() < 0.6
    torch.testing.assert_close(out[flipped], x[flipped].flip(-1))
    torch.testing.assert_close(out[~flipped], x[~flipped])
    for preset in FASHION_PRESETS:
        y = augment_tensor_batch(torch.rand(8, 1, 16, 16), "fashion_mnist", preset, normalize=False)
        assert y.shape == (8, 1, 16, 16) and 0 <= float(y.min()) and float(y.max()) <= 1


def test_digits_stream_unchanged_by_the_flip_option():
    """Presets without a flip draw exactly what the digits augmentation drew before flips existed."""
    from isl.data.transforms import augment_batch

    x = torch.rand(16, 1, 8, 8)
    a = augment_digits_batch(x, torch.Generator().manual_seed(3), normalize=False)
    b = augment_batch(x, DIGIT_PRESETS["default"], torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
