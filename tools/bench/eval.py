"""Wall time of the shared evaluation on this machine: weighted kNN (faiss vs torch vs scikit-learn's
KNeighborsClassifier) and k-means over all points (faiss vs scikit-learn KMeans), as ratios from one run.

    python tools/bench/eval.py            # 10k queries x 50k bank x 128 dims, k=200; k-means 50k x 128, K=10
    python tools/bench/eval.py --quick    # 10x fewer points, a smoke test

Data: random unit vectors with random labels from `--classes` classes (the timings do not depend on the
values; the agreement lines check that the three kNN implementations vote alike).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from isl.eval.clustering import kmeans  # noqa: E402
from isl.eval.knn import weighted_knn_predict  # noqa: E402
from isl.neighbors import faiss, faiss_available  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=10_000, help="kNN queries")
    p.add_argument("--bank", type=int, default=50_000, help="kNN bank size and k-means points")
    p.add_argument("--dim", type=int, default=128, help="feature dimension")
    p.add_argument("--k", type=int, default=200, help="neighbours per query")
    p.add_argument("--restarts", type=int, default=10, help="k-means restarts")
    p.add_argument("--classes", type=int, default=10, help="classes (= k-means K)")
    p.add_argument("--temperature", type=float, default=0.1, help="kNN vote temperature tau")
    p.add_argument("--max-iter", type=int, default=100, help="k-means iterations per restart")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="10x fewer queries and bank points")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for torch, faiss and scikit-learn alike (default: each library's own)")
    p.add_argument("--repeat", type=int, default=1, help="runs per timing; the fastest is reported")
    return p


def timed(fn, repeat: int):
    """(result, fastest wall time in seconds over `repeat` runs): the machine may be shared."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def kmeans_objective(x: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of the L2-normalised points to their cluster means."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return float(sum(((x[labels == c] - x[labels == c].mean(0)) ** 2).sum() for c in np.unique(labels)))


def report(title: str, fns: dict, repeat: int, describe) -> dict:
    """Time each callable, print seconds and the ratio to the first one; return {name: result}."""
    runs = {name: timed(fn, repeat) for name, fn in fns.items()}
    base = next(iter(runs.values()))[1]
    print(title)
    for name, (out, sec) in runs.items():
        print(f"  {name:8s} {sec:8.2f} s   {sec / base:6.2f}x   {describe(out)}")
    return {name: out for name, (out, _) in runs.items()}


def bench_knn(bank, labels, queries, args) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    tau = args.temperature
    # cosine distance d = 1 - s, so the vote weight exp(s / tau) is exp((1 - d) / tau)
    clf = KNeighborsClassifier(n_neighbors=args.k, algorithm="brute", metric="cosine",
                               weights=lambda d: np.exp((1.0 - d) / tau))
    fns = {name: (lambda b=name: weighted_knn_predict(bank, labels, queries, args.k, tau, backend=b))
           for name in (["faiss"] if faiss_available() else []) + ["torch"]}
    fns["sklearn"] = lambda: torch.from_numpy(clf.fit(bank.numpy(), labels.numpy()).predict(queries.numpy()))
    reference = weighted_knn_predict(bank, labels, queries, args.k, tau, backend="torch")  # Q
    report(f"weighted kNN: {queries.shape[0]} queries x {bank.shape[0]} bank x {bank.shape[1]} dims, "
           f"k={args.k}", fns, args.repeat,
           lambda pred: f"agreement with torch {(pred.long() == reference).double().mean().item():.4f}")


def bench_kmeans(x, args) -> None:
    backends = (["faiss"] if faiss_available() else []) + ["sklearn"]
    fns = {b: (lambda b=b: kmeans(x, args.classes, args.restarts, args.seed, b, args.max_iter)) for b in backends}
    report(f"k-means: {x.shape[0]} points x {x.shape[1]} dims, K={args.classes}, {args.restarts} restarts, "
           f"<= {args.max_iter} iterations, all points", fns, args.repeat,
           lambda labels: f"objective {kmeans_objective(x, labels):.2f}")


def main() -> None:
    args = build_parser().parse_args()
    if args.quick:
        args.queries, args.bank = max(args.queries // 10, 1), max(args.bank // 10, args.k)
    g = torch.Generator().manual_seed(args.seed)
    bank = F.normalize(torch.randn(args.bank, args.dim, generator=g), dim=1)  # N x d
    queries = F.normalize(torch.randn(args.queries, args.dim, generator=g), dim=1)  # Q x d
    labels = torch.randint(0, args.classes, (args.bank,), generator=g)  # N
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        if faiss_available():
            faiss.omp_set_num_threads(args.threads)
        threadpool_limits(args.threads)  # scikit-learn's OpenMP and BLAS pools
    threads = faiss.omp_get_max_threads() if faiss_available() else "n/a"
    print(f"cpus {os.cpu_count()}, torch threads {torch.get_num_threads()}, faiss threads {threads}, "
          f"faiss {'yes' if faiss_available() else 'no'}; ratios are time / faiss time; best of {args.repeat}")
    bench_knn(bank, labels, queries, args)
    bench_kmeans(bank.numpy(), args)


if __name__ == "__main__":
    main()
