"""Images per second of the train augmentation of an image data set: two views of each image of a batch, through the
per-image PIL path (build_transform + MultiView, one process, one thread) and through the batched path
(isl.data.transforms.augment_views on a uint8 batch, one and two threads), and the ratio batched / PIL on one
thread. `--kornia` adds kornia.augmentation's pipeline of the same transforms, for comparison.

    python tools/bench/augment.py                   # cifar10: batch 256, two 32 px views
    python tools/bench/augment.py --dataset stl10   # 96 px
    python tools/bench/augment.py --quick           # batch 64, fewer repeats: a smoke test

Images are random uint8 pixels (the timings do not depend on the values). Each timing is the fastest of `--repeat`
runs (the machine may be shared). `measure(...)` returns the numbers as a dict for other bench scripts.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from isl.data import MultiView, build_transform, dataset_info  # noqa: E402
from isl.data.transforms import augment_views  # noqa: E402


def fastest(fn, repeat: int, sync=lambda: None) -> float:
    """Fastest wall time in seconds of fn() over `repeat` runs, after one warm-up run."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def kornia_views(dataset: str, views: int):
    """kornia.augmentation's RandomResizedCrop + ColorJitter + RandomGrayscale + Normalize (torch's global RNG)."""
    import kornia.augmentation as K

    info = dataset_info(dataset)
    pipeline = torch.nn.Sequential(
        K.RandomResizedCrop((info.image_size, info.image_size), scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)),
        K.ColorJitter(0.4, 0.4, 0.4, 0.4, p=1.0), K.RandomGrayscale(p=0.2),
        K.Normalize(torch.tensor(info.mean), torch.tensor(info.std)))

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        return torch.stack([pipeline(x) for _ in range(views)], dim=1)
    return run


def measure(dataset: str = "cifar10", batch: int = 256, views: int = 2, threads: tuple[int, ...] = (1, 2),
            repeat: int = 5, device: str = "cpu", kornia: bool = False, seed: int = 0) -> dict:
    """Images per second (each image gets `views` views) of the PIL path on one thread and of the batched path on each
    of `threads` (and kornia's, when asked), plus `speedup_1thread` = batched / PIL on one thread."""
    info = dataset_info(dataset)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(batch, info.image_size, info.image_size, 3), dtype=np.uint8)
    dev = torch.device(device)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(dev)          # B x 3 x S x S uint8
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    before = torch.get_num_threads()
    out: dict = {"dataset": dataset, "batch": batch, "views": views, "device": str(dev)}
    try:
        from PIL import Image
        pil = [Image.fromarray(p) for p in pixels]
        transform = MultiView(build_transform(dataset, train=True), views)
        torch.set_num_threads(1)
        out["pil_1thread"] = batch / fastest(lambda: torch.stack([transform(im) for im in pil]), max(1, repeat // 2))
        for n in threads:
            torch.set_num_threads(n)
            gen = torch.Generator(device=dev).manual_seed(seed)
            out[f"batched_{n}thread"] = batch / fastest(lambda: augment_views(images, dataset, "default", views, gen),
                                                        repeat, sync)
            if kornia:
                run = kornia_views(dataset, views)
                out[f"kornia_{n}thread"] = batch / fastest(lambda: run(images), repeat, sync)
    finally:
        torch.set_num_threads(before)
    out["speedup_1thread"] = out["batched_1thread"] / out["pil_1thread"] if 1 in threads else None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="cifar10", help="an RGB data set of isl.data.DATASETS (cifar10, stl10, ...)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads of the batched path")
    p.add_argument("--repeat", type=int, default=5, help="runs per timing; the fastest is reported")
    p.add_argument("--device", default="cpu", help="device of the batched path (the PIL path runs on the CPU)")
    p.add_argument("--kornia", action="store_true", help="also time kornia.augmentation's pipeline")
    p.add_argument("--quick", action="store_true", help="batch 64 and 2 repeats: a smoke test")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    batch, repeat = (64, 2) if args.quick else (args.batch, args.repeat)
    res = measure(args.dataset, batch, args.views, tuple(args.threads), repeat, args.device, args.kornia)
    size = dataset_info(args.dataset).image_size
    print(f"{args.dataset}: batch {batch}, {args.views} views of {size} px, images/s (fastest of {repeat})")
    for key, value in res.items():
        if key.startswith(("pil_", "batched_", "kornia_")):
            print(f"  {key:18s} {value:10.0f}")
    if res["speedup_1thread"] is not None:
        print(f"  batched / PIL on one thread: {res['speedup_1thread']:.1f}x")
    return res


if __name__ == "__main__":
    main()
