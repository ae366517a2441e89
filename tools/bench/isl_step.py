"""Benchmark of ISL's additions on CPU: objective step vs an NPID step, triplet building, one mining pass.

    python tools/bench/isl_step.py              # N=50,000, d=128, B=128, K=4096, 5 proxies, top-10, 2 threads
    python tools/bench/isl_step.py --quick      # a tiny smoke run

What is timed (median of --repeats after --warmup; the NPID and ISL steps are interleaved so that load from
other processes hits both alike):
- NPID step: logits f . V^T / tau, cross entropy against i, backward w.r.t. the features, bank update;
- ISL step: the same logits, L1 over positive sets (each sample has about --positives random mined
  positives), the hard positive (least similar mined one; a second view for singletons), its B x N logits,
  L2, backward w.r.t. the features, bank update;
- triplets of one batch (p drawn from P_i, n the hardest of K random entries outside P_i);
- one mining pass over every anchor with an untrained G and D and a threshold that accepts every anchor
  (the most neighbour-search work a pass can do).
Targets from the project's issue: ISL / NPID <= 1.3; mining pass <= 60 s on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from isl.gan import Discriminator, Generator  # noqa: E402
from isl.memory_bank import MemoryBank  # noqa: E402
from isl.mining import mine_gan  # noqa: E402
from isl.objective import ISLLoss, hard_positive_logits  # noqa: E402
from isl.positives import PositiveSets  # noqa: E402
from isl.triplets import build_triplets  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-samples", type=int, default=50_000, help="N, rows of the memory bank")
    p.add_argument("--dim", type=int, default=128, help="d, feature dimension")
    p.add_argument("--batch", type=int, default=128, help="B, anchors per step")
    p.add_argument("--positives", type=float, default=5.0, help="mean number of mined positives per sample")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--lam", type=float, default=0.5)
    p.add_argument("--num-candidates", type=int, default=4096, help="K, candidates for the hardest negative")
    p.add_argument("--n-proxies", type=int, default=5)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--radius", type=float, default=0.632)
    p.add_argument("--chunk-size", type=int, default=1024, help="anchors per mining chunk")
    p.add_argument("--backend", default="auto", choices=("auto", "faiss", "torch"), help="mining neighbour search")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--mining-repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    return p


def _median_ms(times: list[float]) -> float:
    return 1000.0 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.num_samples, args.dim, args.batch, args.num_candidates = 3000, 32, 64, 512
        args.repeats, args.warmup, args.chunk_size = 3, 1, 512
    torch.set_num_threads(args.threads)
    n, d, b, tau = args.num_samples, args.dim, args.batch, args.temperature
    gen = torch.Generator().manual_seed(args.seed)
    bank = MemoryBank(n, d, generator=gen)
    positives = PositiveSets(n)
    m = int(n * args.positives / 2)  # undirected random pairs: mean degree ~ args.positives
    positives.add_pairs(torch.randint(0, n, (m,), generator=gen), torch.randint(0, n, (m,), generator=gen))
    objective = ISLLoss(tau, args.lam)
    steps = args.warmup + args.repeats
    batches = [torch.randint(0, n, (b,), generator=gen) for _ in range(steps)]
    feats = [F.normalize(torch.randn(b, d, generator=gen), dim=1) for _ in range(steps)]
    views = [F.normalize(torch.randn(b, d, generator=gen), dim=1) for _ in range(steps)]

    def npid_step(idx, f0):
        f = f0.clone().requires_grad_()
        F.cross_entropy(bank.logits(f, tau), idx).backward()
        bank.update(idx, f.detach())

    def isl_step(idx, f0, f2):
        f = f0.clone().requires_grad_()
        logits = bank.logits(f, tau)                                                  # B x N, the one matmul
        pos_idx, pos_mask = positives.padded(idx)                                     # B x M
        hard, valid = hard_positive_logits(f.detach(), idx, bank, positives, tau, "least_similar",
                                           second_view=f2, similarities=logits.detach())
        objective(logits, pos_idx, pos_mask, hard, valid)["loss"].backward()
        bank.update(idx, f.detach())

    @torch.no_grad()
    def hard_matmul(f2):  # the part of the ISL step that has no NPID counterpart: p^hard's B x N logits
        bank.logits(f2, tau)

    t_npid, t_isl, t_trip, t_hard = [], [], [], []
    for s in range(steps):  # interleaved, so that background load hits both alike
        for fn, args_, out in ((npid_step, (batches[s], feats[s]), t_npid),
                               (isl_step, (batches[s], feats[s], views[s]), t_isl),
                               (hard_matmul, (views[s],), t_hard),
                               (lambda i, f: build_triplets(f, i, bank, positives, args.num_candidates, gen),
                                (batches[s], feats[s]), t_trip)):
            start = time.perf_counter()
            fn(*args_)
            if s >= args.warmup:
                out.append(time.perf_counter() - start)
    npid_ms, isl_ms, trip_ms, hard_ms = _median_ms(t_npid), _median_ms(t_isl), _median_ms(t_trip), _median_ms(t_hard)

    torch.manual_seed(args.seed)
    G, D = Generator(d), Discriminator(d)
    kw = dict(radius=args.radius, threshold=1e-6, n_proxies=args.n_proxies, topk=args.topk,
              num_candidates=args.num_candidates, chunk_size=args.chunk_size, backend=args.backend, generator=gen)
    mine_gan(torch.arange(min(n, 2 * args.chunk_size)), bank, positives, G, D, **kw)  # warm-up
    t_mine = []
    for _ in range(args.mining_repeats):
        start = time.perf_counter()
        res = mine_gan(torch.arange(n), bank, positives, G, D, **kw)
        t_mine.append(time.perf_counter() - start)
    mine_s = statistics.median(t_mine)

    report = {"num_samples": n, "dim": d, "batch": b, "threads": args.threads, "mean_positives": args.positives,
              "backend": args.backend,
              "npid_step_ms": round(npid_ms, 2), "isl_step_ms": round(isl_ms, 2),
              "isl_over_npid": round(isl_ms / npid_ms, 3), "hard_logits_matmul_ms": round(hard_ms, 2),
              "triplets_ms": round(trip_ms, 2),
              "num_candidates": args.num_candidates, "mining_pass_s": round(mine_s, 2),
              "mining_accepted_anchors": res.num_accepted_anchors, "mining_candidate_pairs": int(res.pairs_i.numel()),
              "n_proxies": args.n_proxies, "topk": args.topk}
    print(f"N={n} d={d} B={b} threads={args.threads}")
    print(f"NPID step            {npid_ms:9.2f} ms")
    print(f"ISL step             {isl_ms:9.2f} ms   ISL / NPID = {isl_ms / npid_ms:.3f}  (target <= 1.3)")
    print(f"  of which p^hard's B x N matmul {hard_ms:.2f} ms (L2's second softmax over the bank; NPID has none)")
    print(f"triplets, one batch  {trip_ms:9.2f} ms   (K={args.num_candidates}; reference code: 200 ms)")
    print(f"mining pass          {mine_s:9.2f} s    ({n} anchors, {args.n_proxies} proxies, top-{args.topk}, "
          f"{res.num_accepted_anchors} accepted, {res.pairs_i.numel()} candidate pairs; target <= 60 s)")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
