"""Shared by the baseline tool tests: a tiny schedule and a loader for the tools (isl/tools/<name>.py)."""
import importlib
TINY = ["baseline.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=32", "baseline.m_per_class=4",
        "eval.kmeans_restarts=1", "eval.knn_k=5", "model.low_dim=16", "train.eval_every=1"]


def load_tool(name: str):
    """The module behind tools/<name>.py and its console command: isl.tools.<name>."""
    return importlib.import_module(f"isl.tools.{name}")
