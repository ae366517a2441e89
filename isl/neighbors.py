"""Exact top-k inner-product search with faiss (GPU index when present) and a chunked torch fallback.

Used by the weighted kNN evaluation and by ISL mining. On unit vectors, the inner product is the cosine
and orders points exactly as the Euclidean distance does: ||a - b||^2 = 2 - 2 a.b.
"""
from __future__ import annotations

import torch

try:  # faiss is a hard requirement in requirements.txt, but the torch path keeps the library importable.
    import faiss  # type: ignore
except ImportError:  # pragma: no cover - exercised only on machines without faiss
    faiss = None

BACKENDS = ("auto", "faiss", "torch")


def faiss_available() -> bool:
    return faiss is not None


def faiss_gpu_available() -> bool:
    return faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def cosine_to_euclidean(cos: float | torch.Tensor):
    """Distance between unit vectors whose cosine is `cos`: sqrt(2 - 2 cos)."""
    return (2.0 - 2.0 * cos) ** 0.5


def euclidean_to_cosine(dist: float | torch.Tensor):
    """Cosine between unit vectors at Euclidean distance `dist`: 1 - dist^2 / 2."""
    return 1.0 - dist**2 / 2.0


def resolve_backend(backend: str, device: torch.device | None = None) -> str:
    """auto: faiss when installed, except for tensors on a GPU that faiss cannot use (faiss-cpu, or no faiss-gpu
    wheel for torch's CUDA): there the torch matmul on the GPU beats a copy to faiss's CPU index."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighbour-search backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        on_gpu = device is not None and device.type != "cpu"
        return "faiss" if faiss_available() and (not on_gpu or faiss_gpu_available()) else "torch"
    if backend == "faiss" and not faiss_available():
        raise RuntimeError("backend 'faiss' requested but faiss is not installed: pip install faiss-cpu "
                           "(or faiss-gpu), or use backend='torch'")
    return backend


@torch.no_grad()
def topk_inner_product(queries: torch.Tensor, bank: torch.Tensor, k: int, backend: str = "auto",
                       chunk_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The k bank rows with the largest inner product with each query, best first.

    queries: Q x d, bank: N x d (any float dtype; computed in float32).
    Returns (scores Q x k float32, indices Q x k int64) on the queries' device.
    Exact search in both backends: faiss IndexFlatIP (moved to the GPU when faiss-gpu sees one) or a
    torch matmul over chunks of `chunk_size` queries, so Q x N never has to fit in memory at once.
    """
    if queries.dim() != 2 or bank.dim() != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(f"expected queries Q x d and bank N x d with the same d, got "
                         f"{tuple(queries.shape)} and {tuple(bank.shape)}")
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k={k} must be between 1 and the bank size {bank.shape[0]}")
    device = queries.device
    backend = resolve_backend(backend, device)
    if backend == "faiss":
        index = faiss.IndexFlatIP(bank.shape[1])
        if faiss_gpu_available():
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        index.add(bank.detach().float().cpu().contiguous().numpy())
        scores, indices = index.search(queries.detach().float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(scores).to(device), torch.from_numpy(indices).long().to(device)
    bank_t = bank.detach().float().to(device).t()  # d x N
    out_s, out_i = [], []
    for start in range(0, queries.shape[0], chunk_size):
        sims = queries[start:start + chunk_size].detach().float() @ bank_t  # chunk x N
        s, i = sims.topk(k, dim=1)
        out_s.append(s)
        out_i.append(i)
    return torch.cat(out_s), torch.cat(out_i)
