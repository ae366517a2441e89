"""What every trainer here shares (ISL, NPID, the supervised baselines), without the ISL stack:
the learning-rate schedule, the evaluation of a model, the resume-compatibility check, the non-finite guard.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
import resource
import time

import torch

from .checkpoint import CheckpointError
from .config import Config, to_dict
from .eval import evaluate_embeddings, extract_features
from .eval.linear import stratified_split

# config keys that may differ between a checkpoint and the run that resumes it (machine-specific)
RESUMABLE_DIFFERENCES = {"output_root", "data.root", "data.num_workers", "data.download", "train.device",
                         "eval.batch_size", "eval.val_fraction", "eval.val_seed"}  # the last two: extra scores only
SCHEDULES = ("cosine", "step", "constant")
EVAL_METRICS = ("knn_acc", "nmi", "acc", "ari", "linear_acc")
VAL_METRICS = tuple(f"val_{k}" for k in EVAL_METRICS)  # held-out train-split scores (eval.val_fraction > 0)
EVAL_BACKENDS = ("knn_backend", "kmeans_backend")  # what eval.backend "auto" ran (results.json)


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss or model state; training stops and the last good checkpoint is kept."""


@contextmanager
def stop_on_divergence(run):
    """Re-raise a NonFiniteLossError with what is left on disk: the last good checkpoint of `run` (a RunDir or a
    FollowerRunDir), or the fact that none had been written yet."""
    try:
        yield
    except NonFiniteLossError as err:
        path = run.checkpoint_path
        kept = (f"The last good checkpoint is kept: {path}" if path.is_file() else
                "No checkpoint had been written yet (the run diverged before its first one)")
        raise NonFiniteLossError(f"{err}. {kept}") from None


def check_finite_state(modules: dict[str, torch.nn.Module], when: str, hint: str) -> None:
    """Every floating-point parameter and buffer (BatchNorm running statistics included) is finite, else a
    NonFiniteLossError naming the first tensors: a checkpoint is only called good after this check."""
    bad = [f"{name}.{key}" for name, module in modules.items() for key, t in module.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NonFiniteLossError(f"non-finite values in {shown} {when}; {hint}")


def learning_rate(cfg: Config, epoch: int, epochs: int) -> float:
    """optim.schedule (cosine | step | constant, linear warm-up) at `epoch` of `epochs`; never test metrics."""
    o = cfg.optim
    if epoch < o.warmup_epochs:
        return o.lr * (epoch + 1) / o.warmup_epochs
    if o.schedule == "constant":
        return o.lr
    if o.schedule == "step":
        return o.lr * o.step_gamma ** sum(epoch >= m * epochs for m in o.step_milestones)
    progress = (epoch - o.warmup_epochs) / max(1, epochs - o.warmup_epochs)
    return o.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate_model(model, bank_loader, query_loader, cfg: Config, device: torch.device) -> dict[str, float]:
    """The shared evaluation (isl.eval) on freshly extracted test-transform features (never a memory bank)."""
    start = time.perf_counter()
    bank_f, bank_y, _ = extract_features(model, bank_loader, device)
    query_f, query_y, _ = extract_features(model, query_loader, device)
    if not (bool(torch.isfinite(bank_f).all()) and bool(torch.isfinite(query_f).all())):
        raise NonFiniteLossError("the encoder gives non-finite features on the evaluation images (its weights "
                                 "overflow); lower optim.lr")
    if device.type == "cuda":  # kNN and the linear probe on the GPU (k-means takes them to the host itself)
        bank_f, bank_y, query_f, query_y = (t.to(device) for t in (bank_f, bank_y, query_f, query_y))
    res = evaluate_features(bank_f, bank_y, query_f, query_y, cfg)
    return {**{k: res[k] for k in (*EVAL_METRICS, *VAL_METRICS, *EVAL_BACKENDS) if k in res},
            "eval_time_s": round(time.perf_counter() - start, 2)}


def held_out_summary(res: dict) -> str:
    """' | held-out train: knn .. linear .. nmi .. acc .. ari ..' for a log line, '' without val_* scores."""
    if "val_nmi" not in res:
        return ""
    return " | held-out train: " + " ".join(f"{k} {res[f'val_{m}']:.4f}" for k, m in
                                            (("knn", "knn_acc"), ("linear", "linear_acc"), ("nmi", "nmi"),
                                             ("acc", "acc"), ("ari", "ari")))


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate_features(bank_f, bank_y, query_f, query_y, cfg: Config) -> dict:
    """`evaluate_embeddings` with the settings of cfg.eval (kNN bank = bank_f, queries = query_f).

    With eval.val_fraction > 0 the result also holds the selection scores VAL_METRICS, computed by the same
    protocol inside the labelled bank (the train split) alone: a stratified part of it (eval.val_seed, the same
    part for every training seed) plays the test split, the rest the kNN bank / probe training set, and
    eval.cluster_on picks which of the two are clustered. The test split is not touched, so choosing
    hyper-parameters or a schedule by val_* keeps the test scores unbiased.
    """
    e = cfg.eval
    settings = dict(k=e.knn_k, temperature=e.knn_temperature, kmeans_restarts=e.kmeans_restarts, seed=cfg.seed,
                    backend=e.backend, cluster_on=e.cluster_on, linear_probe=e.linear_probe)
    res = evaluate_embeddings(bank_f, bank_y, query_f, query_y, **settings)
    if e.val_fraction > 0:
        y = torch.as_tensor(bank_y).cpu()                                                   # N
        labelled = torch.nonzero(y >= 0).squeeze(1)                                        # L
        fit, val = stratified_split(y[labelled], e.val_fraction, e.val_seed)
        if val.numel() == 0:
            raise ValueError(f"eval.val_fraction={e.val_fraction} holds out no image of the {labelled.numel()} "
                             "labelled train images (it takes floor(fraction x class size) per class); raise it")
        fit, val = (labelled[i].to(bank_f.device) for i in (fit, val))
        held_out = evaluate_embeddings(bank_f[fit], bank_y[fit], bank_f[val], bank_y[val], **settings)
        res.update({f"val_{k}": held_out[k] for k in EVAL_METRICS}, val_size=int(val.numel()))
    return res


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not k.endswith("kwargs"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_same_config(saved: dict, cfg: Config) -> None:
    """Refuse to resume a checkpoint written with a different experiment config (machine paths may differ)."""
    old, new = _flatten(saved), _flatten(to_dict(cfg))
    diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_DIFFERENCES)
    if diff:
        shown = "; ".join(f"{k}: checkpoint {old.get(k)!r} vs now {new.get(k)!r}" for k in diff[:8])
        raise CheckpointError(f"cannot resume: the checkpoint was written with a different config ({shown}). "
                              "Resume with the same --cfg/--set, or start a new run without --resume")
