"""tools/evaluate.py: the raw-pixel row on digits, and the errors a user meets first."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from isl.checkpoint import CheckpointError
from isl.data import DatasetNotFoundError

from isl.tools import evaluate

ROOT = Path(__file__).resolve().parent.parent


def test_raw_digits_pixels(tmp_path):
    out = tmp_path / "raw.json"
    res = evaluate.main(["--cfg", "digits.yaml", "--features", "raw", "--out", str(out),
                         "--set", "eval.kmeans_restarts=3"])
    saved = json.loads(out.read_text())
    assert saved["knn_acc"] == res["knn_acc"]
    # the measured raw-pixel anchor of REFERENCE.md: kNN ~0.97, NMI ~0.74, ACC ~0.79 (k-means varies by seed)
    assert res["knn_acc"] > 0.95 and 0.68 < res["nmi"] < 0.80 and 0.65 < res["acc"] < 0.88


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate.main(["--ckpt", str(tmp_path / "missing.pt")])


def test_missing_data_root_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        evaluate.main(["--cfg", "cifar10.yaml", "--features", "raw", "--data-root", str(tmp_path / "nowhere")])
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "data.download=true" in message


def test_cli_prints_one_line_error_and_exit_code_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--cfg", "digits.yaml",
                           "--features", "raw", "--set", "eval.knn_kk=3"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown config key 'eval.knn_kk'") and "Traceback" not in proc.stderr
