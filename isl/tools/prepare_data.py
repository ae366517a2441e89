"""Lay a data set's files under the data root where the loaders look for them (no download).

    python3 tools/prepare_data.py fashion_mnist                 # from Debian's dataset-fashion-mnist package
    isl-prepare-data fashion_mnist                              # the same, after pip install -e .
    python3 tools/prepare_data.py fashion_mnist --from DIR      # from a folder with the four IDX files (.gz or not)
    python3 tools/prepare_data.py fashion_mnist --data-root /data

Fashion-MNIST: `apt-get install dataset-fashion-mnist` installs the original gzipped IDX files in
/usr/share/datasets/fashion-mnist; this unpacks them into <data root>/FashionMNIST/raw/ (torchvision's layout)
and checks each file's md5. The data set does the same by itself on first use when the package is installed,
so this step is optional there; use it for another source folder or to prepare a shared data root once.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from isl.cli import run_cli
from isl.data import resolve_data_root
from isl.data.fashion_mnist import prepare_fashion_mnist

PREPARERS = {"fashion_mnist": prepare_fashion_mnist}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(PREPARERS), help="data set to prepare")
    p.add_argument("--from", dest="source", default=None, help="folder holding the files (default: the package's)")
    p.add_argument("--data-root", default=None, help="data folder (else $ISL_DATA_ROOT or ./data)")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check of the unpacked files")
    return p


def main(argv: list[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    folder = PREPARERS[args.name](resolve_data_root(args.data_root), args.source, verify_checksums=not args.no_verify)
    print(f"{args.name}: files ready in {folder}")
    return folder


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
