"""Cost curve toward ImageNet scale on CPU: memory and time of ISL's N-dependent parts at N = 50k, 200k, 1.28M.

    python tools/bench/scale.py                       # N = 50k, 200k, 1.28M; d = 128; writes docs/scale.md's data
    python tools/bench/scale.py --quick               # N = 5k, 20k: a smoke run (seconds)
    python tools/bench/scale.py --out docs/scale      # also write scale.json and scale.png there

Synthetic unit features (random rows: the timings do not depend on the values). For each N:
- memory: the bank (N x d float32) and the positive sets with 1 and 10 mined pairs per sample (PositiveSets'
  buffers: CSR indptr + indices and the edge keys);
- one ISL objective step (B anchors, L1 over the positive sets with 10 pairs per sample, the hard positive, L2,
  backward w.r.t. the features, bank update), in the plain form (B x N logits, `isl.bank_chunk=0`) and in the
  chunked form (`isl.bank_chunk=--bank-chunk`: isl/objective_chunked.py, no B x N tensor);
- one mining pass with G and D (untrained; threshold ~0 accepts every anchor: the most neighbour search a pass
  can do) over --mining-anchors anchors, and its full-pass time extrapolated linearly to all N anchors
  (each anchor's search costs the same, so the full pass is per-anchor time x N: it grows as N^2);
- the evaluation: weighted kNN (k = 200) of --queries test queries against the N-row bank, and k-means over
  all N points (K = --clusters, --kmeans-restarts restarts), with the backend eval.backend=auto picks here.
Each part's peak memory is the largest rise of this process's resident memory above its level just before the
part (sampled every 5 ms by a thread). Times are one run each (the objective step: median of --repeats).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from isl.eval.clustering import kmeans  # noqa: E402
from isl.eval.knn import weighted_knn_predict  # noqa: E402
from isl.gan import Discriminator, Generator  # noqa: E402
from isl.memory_bank import MemoryBank  # noqa: E402
from isl.mining import mine_gan  # noqa: E402
from isl.objective import ISLLoss, hard_positive_features, hard_positive_logits  # noqa: E402
from isl.objective_chunked import ChunkedISLLoss  # noqa: E402
from isl.positives import PositiveSets  # noqa: E402

MB = 2**20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="50000,200000,1280000", help="N values, comma separated")
    p.add_argument("--dim", type=int, default=128, help="d")
    p.add_argument("--batch", type=int, default=128, help="B, anchors of the objective step")
    p.add_argument("--bank-chunk", type=int, default=65536, help="isl.bank_chunk of the chunked objective")
    p.add_argument("--repeats", type=int, default=3, help="objective steps timed (median)")
    p.add_argument("--mining-anchors", type=int, default=2048, help="anchors of the timed mining pass")
    p.add_argument("--queries", type=int, default=10_000, help="kNN test queries (CIFAR's test set size)")
    p.add_argument("--clusters", type=int, default=10, help="k-means K")
    p.add_argument("--kmeans-restarts", type=int, default=1, help="k-means restarts (the evaluation uses 10)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="N = 5k, 20k and fewer anchors / queries (smoke run)")
    p.add_argument("--out", default=None, help="folder for scale.json and scale.png")
    return p


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so a part's rise is not hidden by an earlier part's pages."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """The largest rise of resident memory above its level at entry, sampled every 5 ms (bytes)."""

    def __enter__(self):
        _release_free_memory()
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.rise = self.peak - self.start


def timed(fn):
    """(seconds, peak memory rise in bytes, result) of fn()."""
    with PeakMemory() as mem:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return seconds, mem.rise, out


def positive_sets(n: int, per_sample: int, gen: torch.Generator) -> PositiveSets:
    """P_i with `per_sample` mined members on average: n * per_sample / 2 random undirected pairs."""
    pos = PositiveSets(n)
    m = n * per_sample // 2
    pos.add_pairs(torch.randint(0, n, (m,), generator=gen), torch.randint(0, n, (m,), generator=gen))
    return pos


def buffer_bytes(module: torch.nn.Module) -> int:
    return sum(b.numel() * b.element_size() for b in module.buffers())


def measure(n: int, args) -> dict:
    d, b, tau = args.dim, args.batch, 0.1
    gen = torch.Generator().manual_seed(args.seed)
    row = {"N": n}
    bank = MemoryBank(n, d, generator=gen)
    row["bank_mb"] = buffer_bytes(bank) / MB
    pos1 = positive_sets(n, 1, gen)
    row["positives_1_mb"] = buffer_bytes(pos1) / MB
    del pos1
    build_s, build_rise, positives = timed(lambda: positive_sets(n, 10, gen))
    row["positives_10_mb"] = buffer_bytes(positives) / MB

    objective = ISLLoss(tau, 0.5)

    def step():
        idx = torch.randint(0, n, (b,), generator=gen)
        f = F.normalize(torch.randn(b, d, generator=gen), dim=1).requires_grad_()
        f2 = F.normalize(torch.randn(b, d, generator=gen), dim=1)
        logits = bank.logits(f, tau)                                                    # B x N
        pos_idx, pos_mask = positives.padded(idx)                                       # B x M
        hard, valid = hard_positive_logits(f.detach(), idx, bank, positives, tau, "least_similar", second_view=f2,
                                           similarities=logits.detach())
        objective(logits, pos_idx, pos_mask, hard, valid, check=False)["loss"].backward()
        bank.update(idx, f.detach())

    chunked = ChunkedISLLoss(tau, 0.5, chunk_size=args.bank_chunk)

    def chunked_step():
        idx = torch.randint(0, n, (b,), generator=gen)
        f = F.normalize(torch.randn(b, d, generator=gen), dim=1).requires_grad_()
        f2 = F.normalize(torch.randn(b, d, generator=gen), dim=1)
        pos_idx, pos_mask = positives.padded(idx)                                       # B x M
        hard, valid = hard_positive_features(f.detach(), idx, bank, positives, "least_similar", second_view=f2)
        chunked(f, bank.bank, pos_idx, pos_mask, hard, valid)["loss"].backward()        # B x chunk at a time
        bank.update(idx, f.detach())

    for name, fn in (("objective", step), ("chunked", chunked_step)):
        fn()  # warm-up
        runs = [timed(fn) for _ in range(args.repeats)]
        row[f"{name}_step_ms"] = 1000 * statistics.median(r[0] for r in runs)
        row[f"{name}_peak_mb"] = max(r[1] for r in runs) / MB

    torch.manual_seed(args.seed)
    G, D = Generator(d), Discriminator(d)
    anchors = torch.randperm(n, generator=gen)[:min(n, args.mining_anchors)]
    kw = dict(radius=0.632, threshold=1e-6, n_proxies=5, topk=10, num_candidates=4096, chunk_size=1024,
              generator=gen)
    mine_gan(anchors[:256], bank, positives, G, D, **kw)  # warm-up
    sec, rise, _ = timed(lambda: mine_gan(anchors, bank, positives, G, D, **kw))
    row["mining_anchors"] = anchors.numel()
    row["mining_ms_per_1k_anchors"] = 1000 * sec / anchors.numel() * 1000
    row["mining_full_pass_s"] = sec / anchors.numel() * n          # extrapolated: N anchors
    row["mining_peak_mb"] = rise / MB

    labels = torch.randint(0, args.clusters, (n,), generator=gen)
    queries = F.normalize(torch.randn(args.queries, d, generator=gen), dim=1)
    sec, rise, _ = timed(lambda: weighted_knn_predict(bank.bank, labels, queries, k=200, temperature=0.1,
                                                      num_classes=args.clusters))
    row["knn_s"], row["knn_peak_mb"] = sec, rise / MB
    sec, rise, _ = timed(lambda: kmeans(bank.bank, args.clusters, restarts=args.kmeans_restarts, seed=args.seed))
    row["kmeans_s"], row["kmeans_peak_mb"] = sec, rise / MB
    return row


def growth(rows: list[dict], key: str) -> float:
    """Exponent a of cost ~ N^a between the smallest and the largest N (log-log slope)."""
    import math
    lo, hi = rows[0], rows[-1]
    if lo[key] <= 0 or hi[key] <= 0:
        return float("nan")
    return math.log(hi[key] / lo[key]) / math.log(hi["N"] / lo["N"])


COLUMNS = [("bank_mb", "bank MB"), ("positives_1_mb", "P_i 1/sample MB"), ("positives_10_mb", "P_i 10/sample MB"),
           ("objective_step_ms", "objective step ms (B x N)"), ("objective_peak_mb", "step peak MB (B x N)"),
           ("chunked_step_ms", "objective step ms (chunked)"), ("chunked_peak_mb", "step peak MB (chunked)"),
           ("mining_ms_per_1k_anchors", "mining ms / 1k anchors"), ("mining_full_pass_s", "mining pass s (extrap.)"),
           ("mining_peak_mb", "mining peak MB"), ("knn_s", "kNN s"), ("knn_peak_mb", "kNN peak MB"),
           ("kmeans_s", "k-means s"), ("kmeans_peak_mb", "k-means peak MB")]


def table(rows: list[dict]) -> str:
    head = "| quantity | " + " | ".join(f"N = {r['N']:,}" for r in rows) + " | growth N^a |"
    lines = [head, "|" + "---|" * (len(rows) + 2)]
    for key, name in COLUMNS:
        cells = " | ".join(f"{r[key]:.1f}" if r[key] >= 10 else f"{r[key]:.2f}" for r in rows)
        lines.append(f"| {name} | {cells} | {growth(rows, key):.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = [r["N"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for key, name in (("objective_step_ms", "objective step, B x N (ms)"), ("chunked_step_ms", "objective step, chunked (ms)"), ("mining_full_pass_s", "mining pass (s, extrap.)"),
                      ("knn_s", "kNN eval (s)"), ("kmeans_s", "k-means (s)")):
        ax_t.loglog(n, [r[key] for r in rows], "o-", label=name)
    for key, name in (("bank_mb", "bank"), ("positives_10_mb", "P_i, 10/sample"), ("objective_peak_mb", "step peak, B x N"),
                      ("chunked_peak_mb", "step peak, chunked"),
                      ("mining_peak_mb", "mining peak"), ("knn_peak_mb", "kNN peak"), ("kmeans_peak_mb", "k-means peak")):
        ax_m.loglog(n, [max(r[key], 1e-3) for r in rows], "o-", label=name)
    ax_t.set(xlabel="N", ylabel="time", title="time (CPU, 2 threads)")
    ax_m.set(xlabel="N", ylabel="MB", title="memory")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.sizes, args.mining_anchors, args.queries, args.repeats = "5000,20000", 512, 1000, 1
    torch.set_num_threads(args.threads)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        start = time.perf_counter()
        rows.append(measure(n, args))
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
        print(f"# N = {n:,} measured in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "quick")}
    print(json.dumps({"settings": settings, "torch": torch.__version__}))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scale.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
        plot(rows, out / "scale.png")
    return rows


if __name__ == "__main__":
    main()
