"""torchvision's RandomResizedCrop + ColorJitter + RandomGrayscale (+ RandomHorizontalFlip) + Normalize on a whole
batch of RGB images at once, on the batch's device, every parameter drawn independently per image.

Source: the instance-discrimination recipe of the reference ISL code (Wu et al. 2018), which build_transform applies
per PIL image; the semantics below are torchvision 0.29's (transforms.RandomResizedCrop.get_params, ColorJitter,
functional_tensor's _blend, _rgb2hsv / _hsv2rgb, rgb_to_grayscale), written once for a batch:

- crop: 10 attempts per image of an area fraction ~ U(scale) and a log aspect ratio ~ U(log ratio); w = round(sqrt(A
  r)), h = round(sqrt(A / r)) (half to even, as Python's round); the first attempt that fits the image wins, its top
  ~ U{0..H-h} and left ~ U{0..W-w}; if none fits, the centre crop of the closest allowed ratio. All 10 attempts are
  drawn for every image (torchvision stops at the first that fits: the same law, more draws).
- resize of the crop to size x size: bilinear, align_corners=False, sampling the crop alone (coordinates clamped to
  the crop, as resizing the cropped image does). Crops are never larger than the output for these data sets (output
  side = image side), so torchvision's antialias changes nothing.
- ColorJitter(b, c, s, h): factors ~ U(max(0, 1 - v), 1 + v), hue ~ U(-h, h); the four operations in a random order
  per image (torchvision draws torch.randperm(4) per image). brightness: clamp(f x); contrast: clamp(f x + (1 - f)
  mean(gray(x))); saturation: clamp(f x + (1 - f) gray(x)); gray = 0.2989 R + 0.587 G + 0.114 B; hue: in HSV (the
  hexcone), hue <- (hue + shift) mod 1, saturation and value kept.
- RandomGrayscale(p): gray(x) in all three channels; RandomHorizontalFlip(p) (only where a preset asks): the crop
  sampled right to left; Normalize((x - mean) / std).

The per-image PIL path rounds to uint8 after every operation (PIL's contrast uses the rounded mean of its own 'L'
conversion, its hue shift is quantised to 1/255 turn); this path computes in float32 throughout.

How it is vectorised: the crop and the flip are one grid_sample. Each of brightness, contrast and saturation is a
per-image 3 x 3 colour matrix plus offset (one bmm over the batch) followed by the clamp; since every image applies
its operations in its own order, the batch runs three blend slots, one hue pass over the whole batch, then three
more slots, each image's blends placed in the slots before or after its hue and the unused slots the identity (exact:
1 * x + 0 and a clamp of values already in [0, 1]). Grayscale and Normalize are one last colour matrix. No Python loop
over images, no host synchronisation; the draws are one B x 32 torch.rand from the given generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)   # torchvision's rgb_to_grayscale (ITU-R 601-2 luma)
N_DRAWS = 32                            # uniforms per image, columns as below
_AREA, _RATIO, _TOP, _LEFT, _FLIP = slice(0, 10), slice(10, 20), 20, 21, 22
_FACTORS, _ORDER, _GRAY = slice(23, 27), slice(27, 31), 31
CPU_CHUNK_BYTES = 2 << 20               # float32 output per chunk and torch thread on a CPU (augment_image_batch)


@dataclass(frozen=True)
class ImageAugmentParams:
    """The train augmentation of an RGB data set, torchvision's transforms with these arguments (build_transform)."""

    scale: tuple[float, float] = (0.2, 1.0)              # RandomResizedCrop: area fraction range
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)  # RandomResizedCrop: aspect ratio (w / h) range
    brightness: float = 0.4                              # ColorJitter arguments
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.4                                     # in turns, at most 0.5
    grayscale: float = 0.2                               # RandomGrayscale probability
    hflip: float = 0.0                                   # RandomHorizontalFlip probability (0: no flip)


def sample_crops(u_area: torch.Tensor, u_ratio: torch.Tensor, u_top: torch.Tensor, u_left: torch.Tensor,
                 height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """RandomResizedCrop.get_params for a batch, from uniforms in [0, 1): u_area, u_ratio B x 10 (the attempts),
    u_top, u_left B. Returns (top, left, h, w), each B float holding whole pixel counts."""
    area = float(height * width) * (scale[0] + (scale[1] - scale[0]) * u_area)              # B x 10
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u_ratio)                                             # B x 10
    w_try, h_try = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()     # B x 10
    fits = (w_try > 0) & (w_try <= width) & (h_try > 0) & (h_try <= height)                  # B x 10
    first = fits.to(torch.float32).argmax(1, keepdim=True)      # the first attempt that fits (0 when none does)
    w, h = w_try.gather(1, first).squeeze(1), h_try.gather(1, first).squeeze(1)              # B
    top = torch.floor(u_top * (height - h + 1)).clamp_(max=height - h)   # U{0..H-h}; the clamp guards u -> 1
    left = torch.floor(u_left * (width - w + 1)).clamp_(max=width - w)
    # no attempt fits: torchvision's centre crop of the closest allowed ratio
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    none = ~fits.any(1)                                                                       # B
    w, h = torch.where(none, float(fw), w), torch.where(none, float(fh), h)
    top, left = torch.where(none, float((height - fh) // 2), top), torch.where(none, float((width - fw) // 2), left)
    return top, left, h, w


def _crop_coordinates(start: torch.Tensor, length: torch.Tensor, size: int, extent: int) -> torch.Tensor:
    """grid_sample coordinates (align_corners=False) of `size` output pixels resampling [start, start + length) of an
    axis of `extent` pixels: B x size in [-1, 1], clamped to the crop's first and last pixel centres."""
    k = torch.arange(size, device=start.device, dtype=start.dtype) + 0.5                     # size
    pixel = start[:, None] + k * (length / size)[:, None] - 0.5                              # B x size
    pixel = torch.minimum(torch.maximum(pixel, start[:, None]), (start + length - 1)[:, None])
    return (pixel + 0.5) * (2.0 / extent) - 1.0


def resized_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: torch.Tensor, w: torch.Tensor,
                 size: int, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image crop [top, top + h) x [left, left + w) of x (B x C x H x W float) resized to size x size, bilinear;
    flip (B bool) mirrors an image left-right. Returns B x C x size x size."""
    b, _, height, width = x.shape
    gx = _crop_coordinates(left, w, size, width)                                              # B x size
    gy = _crop_coordinates(top, h, size, height)                                              # B x size
    if flip is not None:
        gx = torch.where(flip[:, None], gx.flip(1), gx)
    grid = torch.stack([gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue per image: x B x 3 x P in [0, 1], shift B in turns -> B x 3 x P.

    In the hexcone, channel n of a pixel is max - chroma * T((n + 6 hue) mod 6) with n = 5, 3, 1 for R, G, B and
    T(k) = clamp(min(k, 4 - k), 0, 1) (the closed form of torchvision's _hsv2rgb); the shift moves 6 hue only.
    Masks are arithmetic, not comparisons: bool tensors are the slow path of CPU kernels."""
    r, g, b = x.unbind(1)                                                                     # B x P each
    mx = torch.maximum(torch.maximum(r, g), b)
    chroma = mx - torch.minimum(torch.minimum(r, g), b)
    # is_r: R is the max (ties go to R, then G, as in _rgb2hsv); 1 - clamp(d * 1e30) is 1 for d = 0, else 0
    is_r = 1.0 - ((mx - r) * 1e30).clamp_(0.0, 1.0)
    is_g = (1.0 - ((mx - g) * 1e30).clamp_(0.0, 1.0)).mul_(1.0 - is_r)
    is_b = (1.0 - is_r).sub_(is_g)
    hue6 = (g - b).mul_(is_r).addcmul_((b - r).add_(chroma, alpha=2.0), is_g)
    hue6.addcmul_((r - g).add_(chroma, alpha=4.0), is_b).div_(chroma.clamp_min(1e-30))      # 6 hue in [-1, 5]
    hue6.add_((6.0 * shift + 12.0)[:, None])                        # + 6 shift, + 12 keeps it positive for frac
    out = torch.empty_like(x)
    for c, n in enumerate((5.0, 3.0, 1.0)):  # the three channels (not images)
        k = (hue6 + n).mul_(1.0 / 6.0).frac_().mul_(6.0)                                     # B x P in [0, 6)
        t = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        torch.addcmul(mx, chroma, t, value=-1.0, out=out[:, c])
    return out


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, hue: bool = True) -> torch.Tensor:
    """ColorJitter with given draws: x B x 3 x P in [0, 1]; factors B x 4 (brightness, contrast, saturation factors,
    hue shift in turns); order B x 4, a permutation of 0..3 per image (3 = hue). hue=False skips the hue pass
    (ColorJitter(hue=0) applies no hue). Returns B x 3 x P.

    A blend is torchvision's _blend(img, ref, f) = clamp(f img + (1 - f) ref), ref = 0 (brightness), mean(gray(img))
    (contrast), gray(img) (saturation): the colour matrix f I (+ (1 - f) 1 w^T for saturation, w the luma weights)
    and the offset (1 - f) w . mean(img) (contrast), then the clamp."""
    b = x.shape[0]
    gray = _vector(GRAY_WEIGHTS, x)                                                          # 3
    is_hue = (order == 3).to(torch.int64)                                                    # B x 4
    hue_at = is_hue.to(torch.float32).argmax(1)                      # B: blends applied before the hue
    # the three blend ops in their order: sort the positions with the hue's moved to the end (no boolean
    # indexing, which would wait for the device)
    rank = torch.arange(4, device=x.device) + 4 * is_hue                                      # B x 4
    blends = order.gather(1, rank.argsort(1)[:, :3])                                          # B x 3
    # six slots: three before the hue pass, three after; an image's blends fill the slots on its side of its hue
    before = torch.arange(3, device=x.device) < hue_at[:, None]                               # B x 3
    active = torch.cat([before, ~before], 1)                                                  # B x 6
    ops = blends.repeat(1, 2)                                                                 # B x 6
    f = torch.where(active, factors[:, :3].gather(1, blends).repeat(1, 2), 1.0)               # B x 6, 1 = identity
    saturation = (1.0 - f) * (ops == 2).to(x.dtype)                                           # B x 6
    eye = torch.eye(3, device=x.device, dtype=x.dtype)
    matrices = f.T[..., None, None] * eye + saturation.T[..., None, None] * gray.view(1, 1, 1, 3)  # 6 x B x 3 x 3
    contrast = ((1.0 - f) * (ops == 1).to(x.dtype)).T.contiguous()                           # 6 x B
    for slot in range(6):  # slots, not images
        if slot == 3 and hue:
            x = hue_shift(x, factors[:, 3])
        offset = (contrast[slot] * (x.mean(2) @ gray)).view(b, 1, 1).expand(b, 3, 1)         # B x 3 x 1
        x = torch.baddbmm(offset, matrices[slot], x).clamp_(0.0, 1.0)
    return x


def _vector(values, like: torch.Tensor) -> torch.Tensor:
    """A few float32 constants on like's device; non_blocking, so a GPU stream is not waited for (a pageable copy
    is staged at once)."""
    return torch.tensor(values, dtype=torch.float32).to(like.device, non_blocking=True)


def _factor_range(value: float, centre: float) -> tuple[float, float]:
    """ColorJitter's range for a non-negative argument: [max(0, 1 - v), 1 + v] (centre 1), [-v, v] (hue, centre 0)."""
    return (max(0.0, centre - value), centre + value) if centre else (-value, value)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (ToTensor's scaling); float images are returned as they are."""
    return x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x


def augment_image_batch(x: torch.Tensor, params: ImageAugmentParams, size: int, mean: tuple[float, ...],
                        std: tuple[float, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """One augmented view of every image: x B x 3 x H x W (uint8, or float in [0, 1]) -> normalised float32
    B x 3 x size x size, on x's device.

    generator: drives every draw (None -> the default generator of x's device, i.e. torch's global RNG, which a
    checkpoint stores); it may live on another device than x (the B x 32 draws are then moved). On a CPU the batch
    is processed in chunks of about CPU_CHUNK_BYTES of float32 output per torch thread, which stay in cache from
    one operation to the next (1.6x faster at 96 px on one thread, tools/bench/augment.py); the draws are made for
    the whole batch first, so the chunking changes no draw."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"augment_image_batch expects RGB images B x 3 x H x W, got shape {tuple(x.shape)}")
    b = x.shape[0]
    rng_device = generator.device if generator is not None else x.device
    u = torch.rand(b, N_DRAWS, generator=generator, device=rng_device).to(x.device, non_blocking=True)  # B x 32
    chunk_bytes = CPU_CHUNK_BYTES * torch.get_num_threads()
    chunk = max(1, chunk_bytes // (3 * size * size * 4)) if x.device.type == "cpu" else b
    if chunk >= b:
        return _augment(x, u, params, size, mean, std)
    chunk = -(-b // -(-b // chunk))                                 # the same number of chunks, of equal sizes
    return torch.cat([_augment(xc, uc, params, size, mean, std) for xc, uc in zip(x.split(chunk), u.split(chunk))])


def _augment(x: torch.Tensor, u: torch.Tensor, p: ImageAugmentParams, size: int, mean: tuple[float, ...],
             std: tuple[float, ...]) -> torch.Tensor:
    """augment_image_batch given the draws u: B x N_DRAWS uniforms."""
    b, _, height, width = x.shape
    top, left, h, w = sample_crops(u[:, _AREA], u[:, _RATIO], u[:, _TOP], u[:, _LEFT], height, width, p.scale,
                                   p.ratio)
    flip = u[:, _FLIP] < p.hflip if p.hflip > 0 else None
    out = resized_crop(to_unit(x), top, left, h, w, size, flip).reshape(b, 3, size * size)   # B x 3 x P
    ranges = [_factor_range(p.brightness, 1.0), _factor_range(p.contrast, 1.0), _factor_range(p.saturation, 1.0),
              _factor_range(p.hue, 0.0)]
    lo, hi = _vector([r[0] for r in ranges], x), _vector([r[1] for r in ranges], x)
    factors = lo + (hi - lo) * u[:, _FACTORS]                                                # B x 4
    order = u[:, _ORDER].argsort(1)                                  # B x 4: a uniform random permutation per image
    out = color_jitter(out, factors, order, hue=p.hue > 0)
    # RandomGrayscale, then Normalize: one colour matrix diag(1 / std) G and offset -mean / std
    gray = _vector(GRAY_WEIGHTS, x).expand(3, 3)
    g = torch.where((u[:, _GRAY] < p.grayscale).view(b, 1, 1), gray, torch.eye(3, device=x.device))  # B x 3 x 3
    s, m = _vector(std, x).view(1, 3, 1), _vector(mean, x).view(1, 3, 1)
    out = torch.baddbmm((-m / s).expand(b, 3, 1), g / s, out)
    return out.view(b, 3, size, size)


def normalize_images(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """The test transform on a batch: B x C x H x W uint8 (or float in [0, 1]) -> (x - mean) / std, float32."""
    c = x.shape[1]
    m, s = _vector(mean, x).view(1, c, 1, 1), _vector(std, x).view(1, c, 1, 1)
    return (to_unit(x) - m) / s
