"""GPU check (41 s with --steps 10 on one H200): the paths that only a GPU exercises, in one printed table.

    python tools/bench/gpu_check.py                  # needs CUDA; exits with a message (code 2) without it
    python tools/bench/gpu_check.py --cpu --quick    # the same steps on the CPU at toy sizes (tests the script)

1. The encoder step (isl.stages.train_encoder_epoch: forward, objective over an N = 50,000 bank, backward, SGD,
   bank update) on CIFAR-shaped synthetic images (B = 256, 3 x 32 x 32, ResNet-18), ISL (two views, L2 over
   10 random mined positives per sample) and NPID (one view, lambda = 0), each in fp32, bf16 and fp16
   (train.amp; fp16 with its GradScaler), channels_last on: ms per step, median after warm-up, and the peak
   GPU memory.
2. A short `tools/train_isl.py --cfg cifar10.yaml` on fake CIFAR-10 files (tests/fake_datasets.py) with a shrunk
   schedule (2 + 1 epochs, one GAN/mining round, bf16): it must run to the end; its wall time.
3. The evaluation on synthetic features (50,000-row bank, 10,000 queries, d = 128, k = 200; k-means K = 10,
   10 restarts, all 60,000 points): kNN with eval.backend=torch on the GPU and k-means (scikit-learn on the
   host, the default without faiss-gpu), seconds each.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests"))  # fake_datasets

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run on the CPU (to test this script without a GPU)")
    p.add_argument("--quick", action="store_true", help="toy sizes (seconds)")
    p.add_argument("--steps", type=int, default=20, help="timed encoder steps per setting (after 5 warm-up)")
    return p


def encoder_steps(device: torch.device, quick: bool, steps: int) -> list[dict]:
    from isl.amp import check_amp, grad_scaler, to_memory_format
    from isl.config import ConfigError, load_config
    from isl.memory_bank import MemoryBank
    from isl.models import build_encoder
    from isl.objective import ISLLoss
    from isl.positives import PositiveSets
    from isl.stages import train_encoder_epoch

    n, b, arch, warm = (2000, 16, "resnet18", 1) if quick else (50_000, 256, "resnet18", 5)
    steps = 2 if quick else steps
    gen = torch.Generator().manual_seed(0)
    images = torch.rand((steps + warm) * b, 2, 3, 32, 32, generator=gen)               # two views per image
    idx = torch.randperm(n, generator=gen)[:len(images)]
    data = list(zip(images, torch.zeros(len(images), dtype=torch.long), idx))
    rows = []
    for method, lam in (("ISL", 0.5), ("NPID", 0.0)):
        for amp in ("off", "bf16", "fp16"):
            cfg = load_config(None, [f"train.amp={amp}", "train.channels_last=true", f"isl.lam={lam}",
                                     f"train.batch_size={b}"])
            try:
                check_amp(amp, device)
            except ConfigError as err:
                rows.append({"part": "encoder step", "setting": f"{method} {amp}", "value": f"n/a ({err})"})
                continue
            torch.manual_seed(0)
            model = to_memory_format(build_encoder(arch, 128, 3).to(device), True)
            opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
            bank = MemoryBank(n, 128, generator=torch.Generator().manual_seed(0)).to(device)
            positives = PositiveSets(n).to(device)
            if lam > 0:
                m = n * 10 // 2
                positives.add_pairs(torch.randint(0, n, (m,), generator=gen).to(device),
                                    torch.randint(0, n, (m,), generator=gen).to(device))
            objective = ISLLoss(0.1, lam)
            scaler = grad_scaler(device, amp)
            times = []

            class Timed(list):  # the loader: one batch at a time, each step timed from its batch to the next
                def __iter__(self):
                    for k in range(0, len(data), b):
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                        times.append(time.perf_counter())
                        batch = data[k:k + b]
                        yield (torch.stack([x[0] for x in batch]), torch.stack([x[1] for x in batch]),
                               torch.stack([x[2] for x in batch]))
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            train_encoder_epoch(model, opt, Timed(), bank, positives, objective, cfg, device, scaler=scaler)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            per_step = [t1 - t0 for t0, t1 in zip(times[warm:], times[warm + 1:])]
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
            assert bank.bank.dtype == torch.float32
            rows.append({"part": "encoder step", "setting": f"{method} {amp} B={b}",
                         "value": f"{1000 * statistics.median(per_step):.1f} ms, peak {peak:.0f} MB"})
    return rows


def short_cifar_run(device: torch.device, quick: bool) -> dict:
    from fake_datasets import write_fake_cifar10
    with tempfile.TemporaryDirectory() as tmp:
        write_fake_cifar10(tmp, n_per_batch=40 if quick else 400, n_test=50 if quick else 500)
        cmd = [sys.executable, str(ROOT / "tools" / "train_isl.py"), "--cfg", "cifar10.yaml", "--data-root", tmp,
               "--output-root", str(Path(tmp) / "runs"), "--no-tensorboard", "--quiet", "--set",
               "data.verify_checksums=false", "train.epochs_first=2", "train.epochs_per_round=1", "isl.rounds=1",
               "train.eval_every=1", "isl.gan.max_epochs=3", "isl.gan.min_epochs=1", "isl.gan.num_candidates=256",
               "isl.gan.diag_steps=20", "isl.mining.quota=0.1", "isl.mining.max_passes=2", "eval.knn_k=20",
               "eval.kmeans_restarts=2", "train.amp=bf16", f"train.device={device.type}",
               f"train.batch_size={32 if quick else 128}"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"part": "train_isl.py cifar10 (fake)", "setting": "2+1 epochs, bf16",
                "value": f"FAILED (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"}
    summary = json.loads(proc.stdout.strip().splitlines()[0])
    return {"part": "train_isl.py cifar10 (fake)", "setting": "2+1 epochs, 1 GAN/mining round, bf16",
            "value": f"ran to the end in {seconds:.0f} s (knn_acc {summary['knn_acc']:.3f} on random images)"}


def evaluation(device: torch.device, quick: bool) -> list[dict]:
    from isl.eval.clustering import kmeans
    from isl.eval.knn import weighted_knn_predict
    n, q = (5000, 1000) if quick else (50_000, 10_000)
    gen = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(n, 128, generator=gen), dim=1).to(device)
    labels = torch.randint(0, 10, (n,), generator=gen).to(device)
    queries = F.normalize(torch.randn(q, 128, generator=gen), dim=1).to(device)
    weighted_knn_predict(bank, labels, queries[:100], k=200, num_classes=10, backend="torch")  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    weighted_knn_predict(bank, labels, queries, k=200, num_classes=10, backend="torch")
    if device.type == "cuda":
        torch.cuda.synchronize()
    knn_s = time.perf_counter() - start
    start = time.perf_counter()
    kmeans(torch.cat([bank, queries]).cpu(), 10, restarts=10, seed=0, backend="auto")
    km_s = time.perf_counter() - start
    return [{"part": "evaluation", "setting": f"kNN k=200, {q:,} x {n:,} (torch on {device.type})",
             "value": f"{knn_s:.2f} s"},
            {"part": "evaluation", "setting": f"k-means K=10, 10 restarts, {n + q:,} points (auto)",
             "value": f"{km_s:.2f} s"}]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); this check measures the "
              "GPU paths and needs one. Run it on a GPU machine, or pass --cpu --quick to test the script.",
              file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows = encoder_steps(device, args.quick, args.steps)
    rows.append(short_cifar_run(device, args.quick))
    rows += evaluation(device, args.quick)
    print(f"| part | setting | result |   ({name}, torch {torch.__version__}, {time.perf_counter() - start:.0f} s)")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['part']} | {r['setting']} | {r['value']} |")
    return 1 if any("FAILED" in str(r["value"]) for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
