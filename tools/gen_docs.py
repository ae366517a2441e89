"""`python tools/gen_docs.py [--check]`: regenerate docs/config.md and docs/losses.md (isl/tools/gen_docs.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's isl/ and baselines/

from isl.tools.gen_docs import cli, main  # noqa: E402,F401

if __name__ == "__main__":
    cli()
