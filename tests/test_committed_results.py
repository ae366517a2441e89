"""The committed result files stay regenerable: every archived run's config.yaml is what its sweep file would
build today. A config default that moves with the evidence must be pinned in the sweep files whose tables were
made before the move (it happened: fashion_mnist.yaml's 2 -> 1 rounds, digits.yaml's GAN threshold)."""
from pathlib import Path

import pytest
import yaml

from isl.cli import baseline_data_base
from isl.config import dump_yaml, load_config
from isl.experiments.sweep import expand, load_sweep_file, parse_variants
from isl.training import _flatten

ROOT = Path(__file__).resolve().parent.parent

# sweep file -> the folder its runs' small files are archived in (tools/report.py --archive)
ARCHIVES = {
    "digits_comparison": "docs/results/digits_comparison/runs",
    "digits_gan_mining": "docs/results/digits_gan_mining/runs",
    "fashion_mnist_comparison": "docs/results/fashion_mnist/runs",
    "fashion_mnist_gan_mining": "docs/results/fashion_mnist_gan_mining/runs",
    "fashion_mnist_supervised": "docs/results/fashion_mnist_supervised/runs",
}
# where a run may differ from its sweep file: machine paths, and the held-out scoring the documented commands
# add with --set (it scores a part of the train split; training is unchanged)
FREE_KEYS = {"data.root", "output_root", "eval.val_fraction"}
# runs made before the CPU k-means default moved from faiss to scikit-learn (commit e3bffca, 2026-12-03 10:05
# UTC; run folders are named by their start time) recorded eval.backend "auto", which then meant faiss
AUTO_MEANT_FAISS_BEFORE = "20261203-100505"


def _same(key: str, old, new, run_folder: str) -> bool:
    if key == "train.amp" and old is False:  # a bool before the amp modes (isl/config.py reads false as "off")
        return new == "off"
    if key == "train.channels_last" and isinstance(old, bool):  # a bool before its auto / on / off choices
        return new == ("on" if old else "off")
    if key == "data.num_workers" and old == 0:  # the default -1 (auto) resolves to 0 for these in-memory data sets
        return new in (0, -1)                   # (batched augmentation: isl.builders.loader_workers)
    if key == "eval.backend" and old == "auto" and run_folder < AUTO_MEANT_FAISS_BEFORE:
        return new == "faiss"
    return old == new


@pytest.mark.parametrize("sweep_name", sorted(ARCHIVES))
def test_archived_runs_are_what_their_sweep_file_builds(sweep_name):
    spec = load_sweep_file(ROOT / "configs" / "ablations" / f"{sweep_name}.yaml")
    variants, variant_cfgs = parse_variants(spec.get("variants"))
    seeds = sorted({int(p.name.split("=")[1]) for p in (ROOT / ARCHIVES[sweep_name]).glob("runs/*/seed=*")})
    runs = {(s.name, s.seed): s for s in expand(spec.get("grid") or {}, seeds, variants, variant_cfgs)}
    base = baseline_data_base(spec.get("data"))
    configs = sorted((ROOT / ARCHIVES[sweep_name]).glob("runs/*/seed=*/*/*/config.yaml"))
    assert configs, f"no archived runs under {ARCHIVES[sweep_name]}"
    mismatches = []
    for path in configs:
        combo, seed, run_folder = path.parts[-5], int(path.parts[-4].split("=")[1]), path.parts[-2]
        run = runs.get((combo, seed))
        assert run is not None, f"{path}: {combo} is not a combination of {sweep_name}.yaml"
        cfg = load_config(run.cfg or spec["cfg"], run.overrides(spec.get("set", [])), base=base)
        built = _flatten(yaml.safe_load(dump_yaml(cfg)))
        for key, old in _flatten(yaml.safe_load(path.read_text())).items():
            # a key the code has dropped since cannot be rebuilt; keys added since are absent from old runs
            if key in FREE_KEYS or key not in built or _same(key, old, built[key], run_folder):
                continue
            mismatches.append(f"{path.relative_to(ROOT)}: {key} ran with {old!r}, the sweep file now gives "
                              f"{built[key]!r} (pin it in the sweep file's `set:`)")
    assert not mismatches, "\n".join(mismatches[:10])
