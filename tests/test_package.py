"""The installable package: pyproject's package list and console commands, the tools/*.py wrappers, and the
version string every run and checkpoint records."""
import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import torch

import isl
from isl.checkpoint import load_checkpoint, save_checkpoint
from isl.config import CONFIG_DIR, load_config
from isl.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("isl", "baselines")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found | {"isl.configs"} == listed
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["isl.configs"] == "configs" and CONFIG_DIR.is_dir()


def test_console_commands_and_wrappers_call_the_same_cli():
    scripts = PYPROJECT["project"]["scripts"]
    expected = {"isl-train", "isl-eval", "isl-baseline", "isl-ablate", "isl-report", "isl-probe", "isl-export"}
    assert expected <= set(scripts)
    for command, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), command
        wrapper = ROOT / "tools" / f"{module.rsplit('.', 1)[1]}.py"
        assert f"from {module} import cli" in wrapper.read_text(), wrapper
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train_isl.py"), "--help"], capture_output=True,
                          text=True, cwd="/")
    assert proc.returncode == 0 and "isl-train" in proc.stdout and "--no-tensorboard" in proc.stdout


def test_version_in_results_and_checkpoints(tmp_path):
    assert isl.__version__ and isl.__version__.count(".") == 2
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.zeros(2)}})
    assert load_checkpoint(tmp_path / "c.pt")["isl_version"] == isl.__version__
    cfg = load_config("digits.yaml", output_root=str(tmp_path))
    run = RunDir.create(cfg, enable_tensorboard=False)
    path = run.write_results({"knn_acc": 0.5})
    assert json.loads(path.read_text())["isl_version"] == isl.__version__
