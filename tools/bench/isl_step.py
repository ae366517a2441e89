"""Benchmark of ISL's additions on CPU: objective step vs an NPID step, triplet building, one mining pass.

    python tools/bench/isl_step.py              # N=50,000, d=128, B=256, K=4096, 5 proxies, top-10, 2 threads
    python tools/bench/isl_step.py --quick      # a tiny smoke run

What is timed (median of --repeats after --warmup; the NPID and ISL steps are interleaved so that load from
other processes hits both alike):
- NPID step: logits f . V^T / tau, cross entropy against i, backward w.r.t. the features, bank update;
- ISL step: the same logits, L1 over positive sets (each sample has about --positives random mined
  positives), the hard positive (least similar mined one; a second view for singletons), its B x N logits,
  L2, backward w.r.t. the features, bank update; in each form: plain (isl/objective.py, the reference), fused
  (isl/objective_fused.py, eager), fused + compiled, "training" (what a run uses by default: the compiled fused
  form where isl.compile_objective=auto turns it on, B x N >= 2^22) and "training_bf16" (the same with L2's
  target logits from bf16 inputs, as under train.amp=bf16 where bf16 is native);
- NPID with its logits and their backward in bf16 (measured, not adopted: see docs/scale.md);
- triplets of one batch (p drawn from P_i, n the hardest of K random entries outside P_i);
- one mining pass over every anchor with an untrained G and D and a threshold that accepts every anchor
  (the most neighbour-search work a pass can do);
- the full encoder step on CIFAR-shaped synthetic images (3 x 32 x 32, the project's ResNet-18, SGD step and
  bank update included): NPID (one view); ISL as `isl.stages.train_encoder_epoch` does it (view 1 with
  autograd, view 2 under no_grad); and ISL as it was before (both views through one forward and backward,
  view 2's gradient thrown away). On CPU a small --enc-batch keeps it quick; the ratios are what to read.
The glibc allocator is tuned as in training (isl.hardware.tune_allocator). Targets: objective ISL / NPID <= 1.3
(the training form); encoder step ISL / NPID <= 1.25; mining pass
<= 60 s on 2 cores.
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
from isl.hardware import describe, native_bf16, tune_allocator  # noqa: E402
from isl.memory_bank import MemoryBank  # noqa: E402
from isl.models import build_encoder  # noqa: E402
from isl.mining import mine_gan  # noqa: E402
from isl.objective import ISLLoss, hard_positive_logits  # noqa: E402
from isl.objective_fused import FusedISLLoss, use_compile  # noqa: E402
from isl.positives import PositiveSets  # noqa: E402
from isl.triplets import build_triplets  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-samples", type=int, default=50_000, help="N, rows of the memory bank")
    p.add_argument("--dim", type=int, default=128, help="d, feature dimension")
    p.add_argument("--batch", type=int, default=256, help="B, anchors per step")
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
    p.add_argument("--enc-batch", type=int, default=32, help="images per encoder step (128 in training)")
    p.add_argument("--enc-repeats", type=int, default=3, help="timed encoder steps of each kind")
    p.add_argument("--arch", default="resnet18", help="encoder of the encoder-step benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    return p


def _median_ms(times: list[float]) -> float:
    return 1000.0 * statistics.median(times)


def encoder_steps(args, bank: MemoryBank, positives: PositiveSets, objective: ISLLoss,
                  gen: torch.Generator) -> dict[str, float]:
    """Median seconds of one full encoder step (encoder, objective, SGD step, bank update) of each kind."""
    tau, b = objective.temperature, args.enc_batch
    model = build_encoder(args.arch, bank.dim, in_channels=3).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)

    def finish(loss, idx, f1):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bank.update(idx, f1.detach())

    def isl_loss(f1, f2, idx):
        logits = bank.logits(f1, tau)                                                 # B x N
        pos_idx, pos_mask = positives.padded(idx)                                     # B x M
        hard, valid = hard_positive_logits(f1.detach(), idx, bank, positives, tau, "least_similar",
                                           second_view=f2, similarities=logits.detach())
        return objective(logits, pos_idx, pos_mask, hard, valid, check=False)["loss"]

    def npid(x, idx):                                    # one view
        f1 = model(x[:, 0])                                                           # B x d
        finish(F.cross_entropy(bank.logits(f1, tau), idx), idx, f1)

    def isl_before(x, idx):                              # both views in one batch, forward and backward
        f1, f2 = model(x.transpose(0, 1).flatten(0, 1)).chunk(2)                     # B x d each
        finish(isl_loss(f1, f2, idx), idx, f1)

    def isl_now(x, idx):                                 # view 2 without autograd (isl.stages)
        f1 = model(x[:, 0])                                                           # B x d
        with torch.no_grad():
            f2 = model(x[:, 1])                                                       # B x d
        finish(isl_loss(f1, f2, idx), idx, f1)

    times: dict[str, list[float]] = {"npid": [], "isl_before": [], "isl_now": []}
    for rep in range(1 + args.enc_repeats):  # the first round warms up; kinds interleaved against load
        x = torch.randn(b, 2, 3, 32, 32, generator=gen)                              # B x 2 views x C x H x W
        idx = torch.randint(0, len(bank), (b,), generator=gen)
        for name, fn in (("npid", npid), ("isl_before", isl_before), ("isl_now", isl_now)):
            start = time.perf_counter()
            fn(x, idx)
            if rep:
                times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.num_samples, args.dim, args.batch, args.num_candidates = 3000, 32, 64, 512
        args.repeats, args.warmup, args.chunk_size = 3, 1, 512
        args.enc_batch, args.enc_repeats, args.arch = 8, 1, "convnet"
    torch.set_num_threads(args.threads)
    tune_allocator()
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

    def isl_step(idx, f0, f2, loss=objective, target_dtype=None):
        f = f0.clone().requires_grad_()
        logits = bank.logits(f, tau)                                                  # B x N, the one matmul
        pos_idx, pos_mask = positives.padded(idx)                                     # B x M
        hard, valid = hard_positive_logits(f.detach(), idx, bank, positives, tau, "least_similar",
                                           second_view=f2, similarities=logits.detach(), dtype=target_dtype)
        loss(logits, pos_idx, pos_mask, hard, valid, check=False)["loss"].backward()
        bank.update(idx, f.detach())

    def npid_bf16_step(idx, f0):  # the logits and their backward from bf16 inputs (not adopted)
        f = f0.clone().requires_grad_()
        F.cross_entropy(bank.logits(f.bfloat16(), tau).float(), idx).backward()
        bank.update(idx, f.detach())

    cpu = torch.device("cpu")
    # what a run uses: the compiled fused form where isl.compile_objective=auto turns it on, else the plain one;
    # "training_bf16" adds L2's target logits from bf16 inputs, as train.amp=bf16 (or auto on a native-bf16 CPU) does
    training = (FusedISLLoss(tau, args.lam, compile=True) if use_compile("auto", args.lam, b * n, cpu) else objective)
    target_dtype = torch.bfloat16 if native_bf16(cpu) else None
    forms = {"plain": (objective, None), "fused": (FusedISLLoss(tau, args.lam), None),
             "compiled": (FusedISLLoss(tau, args.lam, compile=True), None), "training": (training, None),
             "training_bf16": (training, target_dtype)}

    @torch.no_grad()
    def hard_matmul(f2):  # the part of the ISL step that has no NPID counterpart: p^hard's B x N logits
        bank.logits(f2, tau)

    t_npid, t_trip, t_hard, t_npid16 = [], [], [], []
    t_forms = {name: [] for name in forms}
    for s in range(steps):  # interleaved, so that background load hits all alike
        for fn, args_, out in ((npid_step, (batches[s], feats[s]), t_npid),
                               (npid_bf16_step, (batches[s], feats[s]), t_npid16),
                               *((lambda i, f, f2, loss=loss, dt=dt: isl_step(i, f, f2, loss, dt),
                                  (batches[s], feats[s], views[s]), t_forms[name])
                                 for name, (loss, dt) in forms.items()),
                               (hard_matmul, (views[s],), t_hard),
                               (lambda i, f: build_triplets(f, i, bank, positives, args.num_candidates, gen),
                                (batches[s], feats[s]), t_trip)):
            start = time.perf_counter()
            fn(*args_)
            if s >= args.warmup:
                out.append(time.perf_counter() - start)
    npid_ms, trip_ms, hard_ms = _median_ms(t_npid), _median_ms(t_trip), _median_ms(t_hard)
    npid16_ms = _median_ms(t_npid16)
    form_ms = {name: _median_ms(t) for name, t in t_forms.items()}
    isl_ms = form_ms["training"]

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

    enc = encoder_steps(args, bank, positives, objective, gen)

    report = {"num_samples": n, "dim": d, "batch": b, "threads": args.threads, "mean_positives": args.positives,
              "backend": args.backend,
              "npid_step_ms": round(npid_ms, 2), "isl_step_ms": round(isl_ms, 2),
              "isl_over_npid": round(isl_ms / npid_ms, 3), "hard_logits_matmul_ms": round(hard_ms, 2),
              "npid_bf16_logits_step_ms": round(npid16_ms, 2), "training_compiled": isinstance(training, FusedISLLoss),
              "training_target_bf16": target_dtype is not None,
              **{f"isl_{name}_step_ms": round(ms, 2) for name, ms in form_ms.items()},
              "triplets_ms": round(trip_ms, 2),
              "num_candidates": args.num_candidates, "mining_pass_s": round(mine_s, 2),
              "mining_accepted_anchors": res.num_accepted_anchors, "mining_candidate_pairs": int(res.pairs_i.numel()),
              "n_proxies": args.n_proxies, "topk": args.topk, "arch": args.arch, "enc_batch": args.enc_batch,
              "enc_npid_s": round(enc["npid"], 3), "enc_isl_before_s": round(enc["isl_before"], 3),
              "enc_isl_s": round(enc["isl_now"], 3), "enc_isl_over_npid": round(enc["isl_now"] / enc["npid"], 3),
              "enc_isl_before_over_npid": round(enc["isl_before"] / enc["npid"], 3),
              "enc_saving": round(1 - enc["isl_now"] / enc["isl_before"], 3)}
    print(f"N={n} d={d} B={b} threads={args.threads}; {describe(cpu)}")
    print(f"NPID step            {npid_ms:9.2f} ms")
    print(f"NPID, bf16 logits    {npid16_ms:9.2f} ms   (logits and their backward from bf16 inputs; not adopted)")
    for name, ms in form_ms.items():
        print(f"ISL step, {name:9s}  {ms:9.2f} ms   ISL / NPID = {ms / npid_ms:.3f}"
              + ("  (target <= 1.3)" if name.startswith("training") else "")
              + ("" if name == "plain" else f"; plain / {name} = {form_ms['plain'] / ms:.3f}"))
    print(f"  training = {'fused, compiled' if isinstance(training, FusedISLLoss) else 'plain'} (train.amp=off, "
          f"the default); training_bf16: the same with L2's target logits in "
          f"{'bf16 (train.amp=bf16 / auto here)' if target_dtype is not None else 'float32 (no native bf16 here)'}")
    print(f"  of which p^hard's B x N matmul {hard_ms:.2f} ms (L2's second softmax over the bank; NPID has none)")
    print(f"triplets, one batch  {trip_ms:9.2f} ms   (K={args.num_candidates}; reference code: 200 ms)")
    print(f"mining pass          {mine_s:9.2f} s    ({n} anchors, {args.n_proxies} proxies, top-{args.topk}, "
          f"{res.num_accepted_anchors} accepted, {res.pairs_i.numel()} candidate pairs; target <= 60 s)")
    print(f"encoder step, {args.arch}, B={args.enc_batch} CIFAR-shaped, median of {args.enc_repeats}:")
    print(f"  NPID (one view)                    {enc['npid']:7.3f} s")
    print(f"  ISL before (2 views fwd+bwd)       {enc['isl_before']:7.3f} s   ISL / NPID = "
          f"{enc['isl_before'] / enc['npid']:.3f}")
    print(f"  ISL now (view 2 without autograd)  {enc['isl_now']:7.3f} s   ISL / NPID = "
          f"{enc['isl_now'] / enc['npid']:.3f}  (target <= 1.25); saving vs before "
          f"{100 * (1 - enc['isl_now'] / enc['isl_before']):.1f}%")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
