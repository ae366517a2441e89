"""Shared by the baseline tool tests: a tiny schedule and a loader for scripts in tools/."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["baseline.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=32", "baseline.m_per_class=4",
        "eval.kmeans_restarts=1", "eval.knn_k=5", "model.low_dim=16", "train.eval_every=1"]


def load_tool(name: str):
    """Import tools/<name>.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
