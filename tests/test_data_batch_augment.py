"""The batched RGB augmentation (isl/data/image_augment.py) against torchvision: each operation equals torchvision's
functional op applied image by image (a plain loop), the draws follow the same laws as the per-image PIL path of
build_transform (statistics over many fixed-seed draws), and a short ISL run on the fake CIFAR-10 trains and resumes
bit-identically with it.

Tolerances of the distribution tests: two-sample Kolmogorov-Smirnov statistics with n = m = 3000 draws per path; the
critical value at alpha = 0.001 is 1.95 sqrt(2 / 3000) = 0.050, so D < 0.05 rejects a true match once in a thousand
seeds (the seeds are fixed: the outcome is deterministic). Rates use 4 binomial standard deviations.
"""
import colorsys
import math

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.stats import ks_2samp

from fake_datasets import write_fake_cifar10, write_fake_stl10
from isl.builders import build_raw_train_set, loader_workers
from isl.config import ConfigError, load_config
from isl.data import DATASETS, IMAGE_PRESETS, augment_views, build_dataset, build_transform
from isl.data.image_augment import (ImageAugmentParams, augment_image_batch, color_jitter, hue_shift, resized_crop,
                                    sample_crops)
from isl.data.tensor_images import TensorImages
from isl.data.transforms import augment_raw_batch

RGB = [name for name, info in sorted(DATASETS.items()) if not info.in_memory]
N_DRAWS = 3000
KS_MAX = 0.05                  # see the module docstring
OFF = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
           grayscale=0.0)      # every operation off: the whole image, resampled at its own pixel centres


def _uint8(b, size, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (b, 3, size, size), dtype=np.uint8))


def _batched(image: np.ndarray, params: ImageAugmentParams, n: int = N_DRAWS, seed: int = 0) -> np.ndarray:
    """n draws of the batched path on copies of one H x W x 3 uint8 image, unnormalised: n x H x W x 3 in 0..255."""
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1).contiguous()
    out = augment_image_batch(x, params, image.shape[0], (0.0,) * 3, (1.0,) * 3, torch.Generator().manual_seed(seed))
    return (out * 255).permute(0, 2, 3, 1).numpy()


def _pil(image: np.ndarray, transform, n: int = N_DRAWS, seed: int = 0) -> np.ndarray:
    """n draws of a torchvision PIL transform (torch's global RNG) of one image: n x H x W x 3 in 0..255."""
    pil = Image.fromarray(image)
    torch.manual_seed(seed)
    return np.stack([np.asarray(transform(pil), dtype=np.float64) for _ in range(n)])


def _ks(a, b) -> float:
    return ks_2samp(np.asarray(a).ravel(), np.asarray(b).ravel()).statistic


# ------------------------------------------------------------------ shapes, normalisation, seeds, independence

@pytest.mark.parametrize("name", RGB)
def test_views_shape_dtype_and_the_test_transform(name):
    info = DATASETS[name]
    x = _uint8(3, info.image_size)
    views = augment_views(x, name, "default", n_views=2)
    assert views.shape == (3, 2, 3, info.image_size, info.image_size) and views.dtype == torch.float32
    assert torch.isfinite(views).all() and not torch.equal(views[:, 0], views[:, 1])
    # preset none and every operation off: exactly the test transform (ToTensor + Normalize of the PIL image)
    test = torch.stack([build_transform(name, train=False)(Image.fromarray(img.permute(1, 2, 0).numpy())) for img in x])
    torch.testing.assert_close(augment_raw_batch(x, name, "none"), test)
    off = augment_image_batch(x, ImageAugmentParams(**OFF), info.image_size, info.mean, info.std)
    # grid_sample's float32 coordinates land within ~1e-5 pixel of the centres at 96 px: < 0.01 of a uint8 level
    torch.testing.assert_close(off, test, atol=1e-4, rtol=0)


def test_draws_are_reproducible_from_a_generator_and_from_the_global_rng():
    x = _uint8(8, 32)
    a = augment_views(x, "cifar10", "default", 2, torch.Generator().manual_seed(3))
    b = augment_views(x, "cifar10", "default", 2, torch.Generator().manual_seed(3))
    c = augment_views(x, "cifar10", "default", 2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)  # generator=None: torch's global RNG, which a checkpoint stores (exact resume)
    d = augment_views(x, "cifar10", "default", 2)
    torch.manual_seed(5)
    assert torch.equal(d, augment_views(x, "cifar10", "default", 2))


def test_each_image_gets_its_own_draws():
    x = _uint8(1, 32).expand(64, -1, -1, -1)            # 64 copies of one image
    out = augment_raw_batch(x, "cifar10", "default", torch.Generator().manual_seed(0)).flatten(1)
    assert torch.cdist(out, out).add(torch.eye(64) * 1e9).min() > 1e-3   # no two copies augmented alike
    # the draws of an image do not depend on the rest of the batch's content
    y = torch.cat([x[:1], _uint8(63, 32, seed=1)])
    first = augment_raw_batch(y, "cifar10", "default", torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(first, out[0].view(3, 32, 32))


def test_refuses_images_that_are_not_rgb():
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        augment_image_batch(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), ImageAugmentParams(), 8, (0.5,), (0.5,))


# ------------------------------------------------------------------ each operation = torchvision's, image by image

def test_crop_and_flip_equal_torchvision_resized_crop_per_image():
    g = torch.Generator().manual_seed(0)
    for size in (32, 96):
        x = torch.rand(16, 3, size, size, generator=g)
        u = torch.rand(16, 22, generator=g)
        top, left, h, w = sample_crops(u[:, :10], u[:, 10:20], u[:, 20], u[:, 21], size, size, (0.2, 1.0),
                                       (3 / 4, 4 / 3))
        flip = torch.arange(16) % 2 == 0
        out = resized_crop(x, top, left, h, w, size, flip)
        for i in range(16):  # the obviously correct loop: crop, resize (antialiased bilinear), flip
            ref = TF.resized_crop(x[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), [size, size], antialias=True)
            torch.testing.assert_close(out[i], ref.flip(-1) if flip[i] else ref, atol=2e-5, rtol=0)


def test_crop_draws_follow_get_params_including_the_fallback():
    # every attempt too large for a 4 x 40 image: torchvision's centre crop of ratio 4/3 (h = 4, w = 5)
    u = torch.full((3, 10), 0.99)
    top, left, h, w = sample_crops(u, u, u[:, 0], u[:, 0], 4, 40, (0.9, 1.0), (3 / 4, 4 / 3))
    assert h.tolist() == [4] * 3 and w.tolist() == [5] * 3 and left.tolist() == [17] * 3 and top.tolist() == [0] * 3
    # the first attempt that fits wins: attempt 0 asks for 2 x the area (too large), attempt 1 for a quarter of it
    area = torch.tensor([[1.0, 0.0] + [0.5] * 8])
    _, _, h, w = sample_crops(area, torch.full((1, 10), 0.5), torch.zeros(1), torch.zeros(1), 32, 32, (0.25, 2.0),
                              (1.0, 1.0))
    assert (int(h), int(w)) == (16, 16)
    # sizes are round(sqrt(A r)), positions stay inside the image
    u = torch.rand(2000, 22, generator=torch.Generator().manual_seed(1))
    top, left, h, w = sample_crops(u[:, :10], u[:, 10:20], u[:, 20], u[:, 21], 32, 32, (0.2, 1.0), (3 / 4, 4 / 3))
    assert bool((top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all())
    assert bool((h * w >= 0.2 * 1024 * 0.9).all())


def test_color_jitter_equals_torchvision_functional_ops_in_each_images_order():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 12, 12, generator=g)
    x[:4] = x[:4, :1]                    # gray images (zero chroma)
    x[4:8, 1] = x[4:8, 0]                # ties for the max channel
    factors = torch.rand(48, 4, generator=g) * 0.8 + torch.tensor([0.6, 0.6, 0.6, -0.4])
    order = torch.stack([torch.randperm(4, generator=g) for _ in range(48)])
    out = color_jitter(x.reshape(48, 3, -1), factors, order).view_as(x)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(48):  # torchvision's ColorJitter.forward with these factors and this order
        ref = x[i]
        for k in order[i].tolist():
            ref = ops[k](ref, float(factors[i, k]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    assert len({tuple(o) for o in order.tolist()}) > 12   # the test covered many orders


def test_hue_shift_equals_torchvision_adjust_hue():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 3, 8, 8, generator=g)
    x[0], x[1, 2] = 0.0, x[1, 0]         # black; B ties R
    shift = torch.linspace(-0.5, 0.5, 32)
    out = hue_shift(x.reshape(32, 3, -1), shift).view_as(x)
    for i in range(32):
        torch.testing.assert_close(out[i], TF.adjust_hue(x[i], float(shift[i])), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ the batched and the PIL path draw the same law

def _coordinate_image(size: int) -> np.ndarray:
    """R encodes x, G encodes y: pixel (y, x) = (8 x + 4, 8 y + 4, 128) for a 32 x 32 image."""
    step = 256 // size
    ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([xs * step + step // 2, ys * step + step // 2, np.full_like(xs, 128)], -1).astype(np.uint8)


def test_crop_area_and_aspect_ratio_match_the_pil_path():
    size = 32
    image = _coordinate_image(size)
    p = IMAGE_PRESETS["default"]
    pil = _pil(image, T.Compose([T.RandomResizedCrop(size, scale=p.scale, ratio=p.ratio), T.PILToTensor(),
                                 lambda t: t.permute(1, 2, 0)]))
    ours = _batched(image, ImageAugmentParams(**{**OFF, "scale": p.scale, "ratio": p.ratio}))

    def crop_of(out):  # the output's corner pixels are the crop's corner pixels (resize samples the crop's centres)
        left, right = (out[:, 0, 0, 0] - 4) / 8, (out[:, 0, -1, 0] - 4) / 8
        top, bottom = (out[:, 0, 0, 1] - 4) / 8, (out[:, -1, 0, 1] - 4) / 8
        w, h = np.round(right - left + 1), np.round(bottom - top + 1)
        return w * h / size**2, np.log(w / h), (left + w / 2) / size, (top + h / 2) / size

    for name, a, b in zip(("area", "log aspect", "centre x", "centre y"), crop_of(pil), crop_of(ours)):
        assert _ks(a, b) < KS_MAX, name
        assert abs(a.mean() - b.mean()) < 4 * math.sqrt((a.var() + b.var()) / N_DRAWS), name
    area, log_aspect = crop_of(ours)[:2]
    # U(0.2, 1) before the attempts that do not fit the square are rejected (mean 0.55, not 0.6); w and h are rounded
    assert 0.18 <= area.min() and area.max() == 1.0 and 0.5 < area.mean() < 0.6
    assert np.abs(log_aspect).max() <= math.log(4 / 3) + 0.1


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue"])
def test_color_factors_match_the_pil_path(op):
    size = 8
    if op == "contrast":   # two gray tones, 60 and 190 (mean 125): the gap scales by the factor
        image = np.full((size, size, 3), 60, np.uint8)
        image[size // 2:] = 190
        recover = lambda out: (out[:, -1, 0, 0] - out[:, 0, 0, 0]) / 130.0
    elif op == "brightness":
        image = np.full((size, size, 3), 100, np.uint8)
        recover = lambda out: out[:, 0, 0, 0] / 100.0
    elif op == "saturation":  # the gray blend cancels in R - B
        image = np.tile(np.array([200, 100, 50], np.uint8), (size, size, 1))
        recover = lambda out: (out[:, 0, 0, 0] - out[:, 0, 0, 2]) / 150.0
    else:                  # a red of hue 0: the output's hue is the shift
        image = np.tile(np.array([200, 50, 50], np.uint8), (size, size, 1))

        def recover(out):
            h = np.array([colorsys.rgb_to_hsv(*(px / 255.0))[0] for px in out[:, 0, 0]])
            return (h + 0.5) % 1.0 - 0.5
    value = 0.4
    pil = recover(_pil(image, T.Compose([T.ColorJitter(**{op: value}), T.PILToTensor(),
                                         lambda t: t.permute(1, 2, 0)])))
    ours = recover(_batched(image, ImageAugmentParams(**{**OFF, op: value})))
    lo, hi = (-value, value) if op == "hue" else (1 - value, 1 + value)
    for draws in (pil, ours):  # U(lo, hi); PIL rounds to uint8, so its factors carry +-1/100 of error
        assert lo - 0.012 <= draws.min() and draws.max() <= hi + 0.012
        assert abs(draws.mean() - (lo + hi) / 2) < 4 * (hi - lo) / math.sqrt(12 * N_DRAWS) + 0.005
    assert _ks(pil, ours) < KS_MAX


def test_grayscale_rate_matches_the_pil_path():
    image = np.tile(np.array([200, 100, 50], np.uint8), (4, 4, 1))
    pil = _pil(image, T.Compose([T.RandomGrayscale(0.2), T.PILToTensor(), lambda t: t.permute(1, 2, 0)]))
    ours = _batched(image, ImageAugmentParams(**{**OFF, "grayscale": 0.2}))
    sd = math.sqrt(0.2 * 0.8 / N_DRAWS)
    for out in (pil, ours):
        gray = np.abs(out[:, 0, 0, 0] - out[:, 0, 0, 2]) < 2   # R = B only when grayscaled
        assert abs(gray.mean() - 0.2) < 4 * sd
    # and the gray values agree (luma 0.2989 R + 0.587 G + 0.114 B; PIL's integer luma within 1)
    assert np.abs(ours[np.abs(ours[:, 0, 0, 0] - ours[:, 0, 0, 2]) < 2][:, 0, 0, 0] - 124.18).max() < 0.1


def test_flip_preset_flips_half_the_images_like_the_pil_path():
    image = _coordinate_image(32)
    flip = IMAGE_PRESETS["flip"]
    ours = _batched(image, ImageAugmentParams(**{**OFF, "hflip": flip.hflip}))
    pil = _pil(image, T.Compose([T.RandomHorizontalFlip(flip.hflip), T.PILToTensor(), lambda t: t.permute(1, 2, 0)]))
    for out in (ours, pil):
        flipped = out[:, 0, 0, 0] > out[:, 0, -1, 0]      # x decreases left to right
        assert abs(flipped.mean() - 0.5) < 4 * math.sqrt(0.25 / N_DRAWS)
    steps = build_transform("cifar10", True, "flip").transforms
    assert [type(s) for s in steps[:3]] == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ColorJitter]


def test_full_recipe_output_statistics_match_the_pil_path():
    # a smooth colourful image; per-draw channel means and contrasts of the normalised views, whole recipe
    ys, xs = np.meshgrid(np.linspace(0, 1, 32), np.linspace(0, 1, 32), indexing="ij")
    image = (np.stack([xs, ys, 1 - xs * ys], -1) * 200 + 20).astype(np.uint8)
    n = 1500
    pil = _pil(image, build_transform("cifar10", train=True), n=n)             # normalised n x 3 x 32 x 32
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1).contiguous()
    ours = augment_raw_batch(x, "cifar10", "default", torch.Generator().manual_seed(0)).numpy()
    critical = 1.95 * math.sqrt(2 / n)                   # KS at alpha = 0.001 for n = m = 1500
    for c in range(3):
        assert _ks(pil[:, c].mean((1, 2)), ours[:, c].mean((1, 2))) < critical
        assert _ks(pil[:, c].std((1, 2)), ours[:, c].std((1, 2))) < critical


# ------------------------------------------------------------------ data sets, config, end to end

def test_tensor_images_hold_the_pixels_the_pil_items_show(tmp_path):
    fakes = {"cifar10": write_fake_cifar10(tmp_path), "stl10": write_fake_stl10(tmp_path)}
    for name, fake in fakes.items():
        ds = build_dataset(name, "train", tmp_path, verify_checksums=False)
        raw = TensorImages.from_dataset(ds)
        assert raw.images.dtype == torch.uint8 and raw.images.shape[1] == 3 and len(raw) == len(ds)
        for i in (0, len(ds) - 1):
            image, target, index = raw[i]
            assert np.array_equal(image.permute(1, 2, 0).numpy(), np.asarray(ds[i][0])) and index == i
            assert target == ds[i][1]
        assert np.array_equal(raw.images.permute(0, 2, 3, 1).numpy(), fake["train"].images)


def test_backend_and_workers_config(tmp_path):
    cfg = load_config("cifar10.yaml", [f"data.root={tmp_path}"])
    assert cfg.data.augment_backend == "auto" and cfg.data.num_workers == -1
    assert loader_workers(cfg, per_image=False) == 0 and loader_workers(cfg, per_image=True) >= 1
    assert loader_workers(load_config("cifar10.yaml", ["data.num_workers=0"]), per_image=True) == 0
    with pytest.raises(ConfigError, match="data.augment_backend='torch' is not one of auto, batched, pil"):
        load_config("cifar10.yaml", ["data.augment_backend=torch"])
    with pytest.raises(ConfigError, match="data.num_workers"):
        load_config("cifar10.yaml", ["data.num_workers=-2"])
    with pytest.raises(ConfigError, match="data.augment"):
        load_config("cifar10.yaml", ["data.augment=strong"])
    write_fake_cifar10(tmp_path, n_per_batch=4)
    raw = build_raw_train_set(load_config("cifar10.yaml", [f"data.root={tmp_path}", "data.verify_checksums=false",
                                                           "train.batch_size=8"]))
    assert isinstance(raw, TensorImages) and len(raw) == 20


TINY_CIFAR = ["model.arch=convnet", "train.epochs_first=1", "train.epochs_per_round=1", "isl.rounds=1",
              "train.batch_size=8", "train.max_steps_per_epoch=2", "train.eval_every=1", "isl.gan.max_epochs=1",
              "isl.gan.min_epochs=1", "isl.gan.batch_size=16", "isl.gan.num_candidates=8", "isl.gan.min_d_gap=-1.0",
              "isl.gan.diag_steps=5", "isl.gan.anchor=view", "isl.gan.num_views=1", "isl.mining.max_passes=1",
              "isl.mining.quota=0.2", "isl.mining.radius=1.0", "eval.kmeans_restarts=1", "eval.knn_k=5",
              "eval.linear_probe=false", "model.low_dim=16", "data.verify_checksums=false"]


def test_tiny_isl_run_on_fake_cifar10_with_batched_views_resumes_exactly(tmp_path):
    from isl.checkpoint import load_checkpoint
    from isl.rundir import RunDir
    from isl.train import StopRun, run_isl

    write_fake_cifar10(tmp_path / "data", n_per_batch=8, n_test=10)
    cfg = load_config("cifar10.yaml", TINY_CIFAR, data_root=str(tmp_path / "data"), output_root=str(tmp_path / "r"))
    full = RunDir(tmp_path / "full", enable_tensorboard=False)
    results = run_isl(cfg, full)
    assert 0.0 <= results["knn_acc"] <= 1.0 and results["num_train"] == 40 and results["epochs"] == 2
    part = RunDir(tmp_path / "part", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, part, stop_after=1)   # after the first encoder epoch
    run_isl(cfg, part, resume=part.checkpoint_path)
    a, b = load_checkpoint(full.checkpoint_path), load_checkpoint(part.checkpoint_path)
    for key in ("model", "bank", "positives"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"


def test_tiny_baseline_run_on_fake_cifar10_with_batched_views(tmp_path):
    from baseline_tool_helpers import TINY, load_tool

    write_fake_cifar10(tmp_path / "data", n_per_batch=8, n_test=10)
    results = load_tool("train_baseline").main([
        "--cfg", "baselines/triplet.yaml", "--data", "cifar10", "--set", *TINY, "model.arch=convnet",
        "train.batch_size=16", "baseline.sampler=random", "data.verify_checksums=false", "eval.linear_probe=false",
        "--data-root", str(tmp_path / "data"), "--output-root", str(tmp_path / "runs"), "--no-tensorboard"])
    assert results["loss"] == "triplet" and 0.0 <= results["knn_acc"] <= 1.0


def test_bench_measures_both_paths(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "bench" / "augment.py"
    spec = importlib.util.spec_from_file_location("bench_augment", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.measure("cifar10", batch=8, threads=(1,), repeat=1)
    assert res["pil_1thread"] > 0 and res["batched_1thread"] > 0 and res["speedup_1thread"] > 0
    bench.main(["--quick", "--threads", "1"])
    assert "batched / PIL on one thread" in capsys.readouterr().out
