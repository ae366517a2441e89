"""tools/bench/gpu_check.py on a machine without CUDA: one clear message and exit code 2, nothing run."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_gpu_check_without_cuda_says_so_and_exits_2():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench" / "gpu_check.py")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "no CUDA device is visible" in proc.stderr and "--cpu --quick" in proc.stderr
    assert proc.stdout == ""
