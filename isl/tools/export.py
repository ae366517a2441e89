"""Export a checkpoint's encoder alone, as a state_dict for this project's encoder or for torchvision's ResNet.

Installed (`pip install -e .`): `isl-export ...`; from a checkout: `python tools/export.py ...`.

    python tools/export.py --ckpt runs/digits_isl/<stamp>/checkpoints/last.pt --out encoder.pt
    python tools/export.py --ckpt runs/cifar10_isl/<stamp>/checkpoints/last.pt --out r18.pt --format torchvision

--format isl (default): trunk + projection head; loads strictly into
    isl.models.build_encoder(arch, low_dim, in_channels)          (or isl.models.export.load_exported(OUT))
--format torchvision (ResNets only): the trunk under torchvision's key names; the projection head is dropped
(or kept as `fc` with --keep-head). It loads strictly into torchvision.models.resnet18/50 after the CIFAR stem
surgery: model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); model.maxpool = nn.Identity() (nn.MaxPool2d(2)
for the *_stl archs); model.fc = nn.Identity() (or nn.Linear(512, low_dim) with --keep-head) -- or call
isl.models.export.torchvision_resnet(arch, in_channels, head_dim), which does exactly that.
Next to OUT, OUT.json records the arch, low_dim, in_channels, format, source checkpoint and code version.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from isl import __version__
from isl.checkpoint import load_saved_run
from isl.cli import run_cli
from isl.config import ConfigError
from isl.data import DATASETS
from isl.models.export import FORMATS, export_state


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True,
                   help="checkpoint (.pt) of train_isl.py or train_baseline.py, or its run directory")
    p.add_argument("--out", required=True, help="file for the exported state_dict (OUT.json is written beside it)")
    p.add_argument("--format", choices=FORMATS, default="isl",
                   help="isl: our Encoder (trunk + head); torchvision: ResNet trunk under torchvision's names")
    p.add_argument("--keep-head", action="store_true", help="torchvision format: keep the projection head as fc")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    ckpt = Path(args.ckpt)
    if ckpt.is_dir():
        ckpt = ckpt / "checkpoints" / "last.pt"
    state, cfg = load_saved_run(ckpt)
    try:
        exported = export_state(state["model"], cfg.model.arch, args.format, args.keep_head)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    head = args.format == "isl" or args.keep_head
    meta = {"format": args.format, "arch": cfg.model.arch, "low_dim": cfg.model.low_dim,
            "in_channels": DATASETS[cfg.data.name].in_channels, "head": head, "dataset": cfg.data.name,
            "experiment": cfg.experiment, "checkpoint": str(ckpt), "isl_version": __version__,
            "source_isl_version": state.get("isl_version")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(exported, tmp)
    os.replace(tmp, out)
    out.with_name(out.name + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    if args.format == "isl":
        how = (f"isl.models.build_encoder({cfg.model.arch!r}, {cfg.model.low_dim}, {meta['in_channels']})"
               ".load_state_dict(torch.load(OUT, weights_only=True))")
    else:
        how = (f"isl.models.export.torchvision_resnet({cfg.model.arch!r}, {meta['in_channels']}, "
               f"{cfg.model.low_dim if args.keep_head else None}).load_state_dict(torch.load(OUT, weights_only=True))")
    print(f"exported {len(exported)} tensors ({args.format}) to {out}; load with {how}")
    return {**meta, "out": str(out), "keys": len(exported)}


def cli() -> None:
    """Console command: user errors print one line and exit 2."""
    run_cli(main)


if __name__ == "__main__":
    cli()
