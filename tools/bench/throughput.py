"""Training throughput against the model-only limit: images per second of the encoder alone, of the full training
step and of an epoch through the real data path, in float32, bf16 and bf16 + channels_last, in one run.

    python tools/bench/throughput.py                          # digits, fashion_mnist.yaml, CIFAR ResNet-18; 2 threads
    python tools/bench/throughput.py --quick                  # a smoke run (seconds)
    python tools/bench/throughput.py --sets fashion_mnist --data-root DATA_ROOT   # the real Fashion-MNIST files

For each data set (its shipped config: digits.yaml, fashion_mnist.yaml, cifar10.yaml's ResNet-18 at 32 px) and
each precision (`train.amp` / `train.channels_last`: fp32 = off / off, fp32_cl = off / on (the defaults on CPU),
bf16 = bf16 / off, bf16_cl = bf16 / on),
one `isl.train.ISLRun` is built from the config and timed on the same machine, one after another:
- (a) encoder: forward + backward + SGD step of one augmented view, nothing else (the model-only limit);
- (b) step: `isl.stages.train_encoder_epoch` on one batch held in memory, i.e. what every training step does:
  the augmentation of the views (batched where the data set has it), view 1 with autograd and view 2 without,
  the objective over the whole memory bank (L1 over P_i with about one mined positive per image, L2 with the hard
  positive's logits), backward, SGD, the bank update;
- (c) epoch: the same function over the run's DataLoader (--steps batches), i.e. (b) plus the loader.
`before` repeats (b) in float32 as the code stood before the defaults moved (the plain objective, glibc's default
allocator: a fresh process with ISL_MALLOC_TUNING=off). (a) and (b) count the trained images (the batch), so
(b) / (a) is the share of the model-only rate a training step keeps; (b) / before is the speed-up.
Data: digits ships with scikit-learn; Fashion-MNIST is read from --data-root when its files are there, else
60,000 + 10,000 random images are written in its real IDX format (the cost does not depend on the pixels); CIFAR-10
is always 50,000 + 10,000 random images in its real pickle format. On a GPU, --device cuda runs the same rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))                # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests"))      # the writers of the real on-disk formats (tests/fake_datasets.py)

import torch  # noqa: E402

from isl.amp import autocast, to_memory_format  # noqa: E402
from isl.config import load_config  # noqa: E402
from isl.hardware import describe  # noqa: E402
from isl.objective_fused import FusedISLLoss  # noqa: E402
from isl.stages import train_encoder_epoch  # noqa: E402
from isl.train import ISLRun  # noqa: E402

SETS = {  # name -> (config, extra overrides)
    "digits": ("digits.yaml", []),
    "fashion_mnist": ("fashion_mnist.yaml", []),
    "cifar10_resnet18": ("cifar10.yaml", ["model.arch=resnet18"]),
}
MODES = {
    "fp32": ["train.amp=off", "train.channels_last=off"],
    "fp32_cl": ["train.amp=off", "train.channels_last=on"],
    "bf16": ["train.amp=bf16", "train.channels_last=off"],
    "bf16_cl": ["train.amp=bf16", "train.channels_last=on"],
    "before": ["train.amp=off", "train.channels_last=off", "isl.compile_objective=off"],
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--modes", nargs="+", default=["fp32", "fp32_cl", "bf16", "bf16_cl"],
                   choices=[m for m in MODES if m != "before"])
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement (after --warmup)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (torch.compile, oneDNN caches)")
    p.add_argument("--batch", type=int, default=0, help="batch size (0: the config's)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--data-root", default="", help="where the real Fashion-MNIST files are (else random IDX files)")
    p.add_argument("--no-before", action="store_true", help="skip the `before` row (b in a fresh process)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    p.add_argument("--json", default="", help="also write the rows to this file")
    p.add_argument("--only", default="", help=argparse.SUPPRESS)  # SET:MODE, one (b) row (the `before` process)
    return p


def fake_roots(tmp: Path, quick: bool) -> dict[str, str]:
    """Random data in the real on-disk formats: Fashion-MNIST IDX files and CIFAR-10 pickles, full size."""
    from fake_datasets import write_fake_cifar10, write_fake_idx
    write_fake_idx(tmp / "FashionMNIST" / "raw", n_train=2000 if quick else 60_000, n_test=500 if quick else 10_000)
    write_fake_cifar10(tmp, n_per_batch=400 if quick else 10_000, n_test=500 if quick else 10_000)
    return {"fashion_mnist": str(tmp), "cifar10_resnet18": str(tmp)}


def make_run(name: str, mode: str, args, roots: dict[str, str]) -> ISLRun:
    cfg_name, extra = SETS[name]
    overrides = [*extra, *MODES[mode], f"train.device={args.device}", "data.verify_checksums=false"]
    if args.batch:
        overrides.append(f"train.batch_size={args.batch}")
    if args.quick:
        overrides.append("train.batch_size=32")
    cfg = load_config(cfg_name, overrides, data_root=roots.get(name) or None, output_root=tempfile.gettempdir())
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    s = ISLRun(cfg, device)
    n = len(s.train_set)  # about one mined positive per image, as after a mining round
    g = torch.Generator().manual_seed(0)
    s.positives.add_pairs(torch.randint(0, n, (n // 2,), generator=g).to(device),
                          torch.randint(0, n, (n // 2,), generator=g).to(device))
    return s


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encoder_rate(s: ISLRun, images: torch.Tensor, args) -> float:
    """(a) images/s of forward + backward + SGD step of the encoder alone on one augmented view."""
    x = (s.batch_views(images.to(s.device)) if s.batch_views is not None else images.to(s.device))[:, 0]
    x = to_memory_format(x, s.precision.channels_last)
    times = []
    for step in range(args.warmup + args.steps):
        sync(s.device)
        start = time.perf_counter()
        with autocast(s.device, s.precision.amp):
            loss = s.train_model(x).float().sum()
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        sync(s.device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def step_rate(s: ISLRun, batch, args) -> float:
    """(b) images/s of train_encoder_epoch on one batch held in memory (augmentation, objective, update)."""
    def run(steps: int) -> dict:
        return train_encoder_epoch(s.train_model, s.optimizer, [batch] * steps, s.bank, s.positives, s.objective,
                                   s.cfg, s.device, batch_views=s.batch_views, scaler=s.scaler,
                                   precision=s.precision)
    run(args.warmup)
    sync(s.device)
    return run(args.steps)["images_per_s"]


def epoch_rate(s: ISLRun, args) -> float:
    """(c) images/s of train_encoder_epoch over the run's DataLoader, --steps batches."""
    s.cfg.train.max_steps_per_epoch = args.steps
    stats = train_encoder_epoch(s.train_model, s.optimizer, s.train_loader(1), s.bank, s.positives, s.objective,
                                s.cfg, s.device, batch_views=s.batch_views, scaler=s.scaler, precision=s.precision)
    return stats["images_per_s"]


def measure(name: str, mode: str, args, roots: dict[str, str], parts=("a", "b", "c")) -> dict:
    s = make_run(name, mode, args, roots)
    batch = next(iter(s.train_loader(0)))
    row = {"set": name, "mode": mode, "arch": s.cfg.model.arch, "batch": s.cfg.train.batch_size,
           "bank": len(s.train_set), "amp": s.precision.amp, "channels_last": s.precision.channels_last,
           "compiled_objective": isinstance(s.objective, FusedISLLoss) and s.objective.compiled}
    if "a" in parts:
        row["encoder"] = encoder_rate(s, batch[0], args)
    if "b" in parts:
        row["step"] = step_rate(s, batch, args)
    if "c" in parts:
        row["epoch"] = epoch_rate(s, args)
    return row


def before_row(name: str, args, data_root: str) -> dict:
    """(b) in float32 as before, in a fresh process with glibc's default allocator (ISL_MALLOC_TUNING=off)."""
    cmd = [sys.executable, __file__, "--only", f"{name}:before", "--steps", str(args.steps), "--warmup",
           str(args.warmup), "--threads", str(args.threads), "--device", args.device, "--batch", str(args.batch),
           "--data-root", data_root, *(["--quick"] if args.quick else [])]
    out = subprocess.run(cmd, env={**os.environ, "ISL_MALLOC_TUNING": "off"}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.warmup = 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        roots = fake_roots(Path(tmp), args.quick)
        real_fm = args.data_root and (Path(args.data_root) / "FashionMNIST" / "raw").is_dir()
        if real_fm:
            roots["fashion_mnist"] = args.data_root
        if args.only:  # one (b) row for the `before` process
            name, mode = args.only.split(":")
            print(json.dumps(measure(name, mode, args, roots, parts=("b",))))
            return []
        rows = []
        for name in args.sets:
            for mode in args.modes:
                rows.append(measure(name, mode, args, roots))
                print(json.dumps(rows[-1]), file=sys.stderr)
            if not args.no_before:
                rows.append(before_row(name, args, roots.get(name, "")))
                print(json.dumps(rows[-1]), file=sys.stderr)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    print(f"{describe(device)}; Fashion-MNIST {'real files' if real_fm else 'random images, real IDX format'}; "
          f"median of {args.steps} steps after {args.warmup}")
    print("| data set (encoder, batch, bank) | precision | (a) encoder img/s | (b) step img/s | (c) epoch img/s "
          "| (b) / (a) | (b) / before |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets:
        group = [r for r in rows if r["set"] == name]
        before = next((r["step"] for r in group if r["mode"] == "before"), None)
        for r in group:
            cells = [f"{r[k]:,.0f}" if k in r else "–" for k in ("encoder", "step", "epoch")]
            kept = f"{r['step'] / r['encoder']:.2f}" if "encoder" in r else "–"
            gain = f"{r['step'] / before:.2f}x" if before else "–"
            label = "fp32, before (plain objective, default allocator)" if r["mode"] == "before" else r["mode"]
            print(f"| {name} ({r['arch']}, {r['batch']}, {r['bank']:,}) | {label} | {' | '.join(cells)} | {kept} | "
                  f"{gain} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
