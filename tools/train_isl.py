"""`python tools/train_isl.py ...` from a checkout = `isl-train ...` after `pip install -e .`.

The tool lives in isl/tools/train_isl.py (`--help` for its options); this file only lets it run without installing.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's isl/ and baselines/

from isl.tools.train_isl import cli, main  # noqa: E402,F401  (main: for scripts that import this file)

if __name__ == "__main__":
    cli()
