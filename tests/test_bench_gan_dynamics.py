"""tools/bench/gan_dynamics.py on a tiny finished run: the AUC curve, and with --labels the ranking analysis."""
import importlib.util
from pathlib import Path

import pytest

from isl.rundir import RunDir
from isl.train import run_isl
from test_train_isl import tiny_cfg

BENCH = Path(__file__).resolve().parents[1] / "tools" / "bench" / "gan_dynamics.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("gan_dynamics", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_curve_and_label_ranking(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "isl.mining.strategy=none")
    run = RunDir.create(cfg, enable_tensorboard=False)
    run_isl(cfg, run)
    run.close()
    out = load_bench().main(["--run", str(run.path), "--epochs", "2", "--every", "1", "--labels",
                             "--setting", "base:", "--setting", "ttur:isl.gan.lr=1.0e-4,isl.gan.d_lr=1.0e-3"])
    assert set(out) == {"base", "ttur"}
    for result in out.values():
        assert [c["epoch"] for c in result["curve"]] == [1, 2]
        for c in result["curve"]:
            for key in ("auc", "gan_precision", "gan_auc_d_score", "gan_auc_sim", "knn_precision", "knn_auc_sim"):
                assert 0.0 <= c[key] <= 1.0, key
    assert "AUC of D's score" in capsys.readouterr().out


def test_not_a_run_directory(tmp_path):
    with pytest.raises(SystemExit, match="not a finished run directory"):
        load_bench().main(["--run", str(tmp_path)])
