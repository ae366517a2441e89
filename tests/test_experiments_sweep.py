"""Sweeps: grid expansion and naming, up-front validation, resumption, retry-once-then-report, parallel workers,
and the tables and figures tools/ablate.py writes afterwards, all with a tiny fake training tool."""
import importlib
import json
import statistics
from pathlib import Path

import pytest

from isl.experiments.sweep import (Sweep, SweepError, child_env, combo_name, execute, expand, format_value,
                                   load_sweep_file, parse_grid_arg, tool_command, validate)

from csv_helpers import read_rows

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for tools/train_isl.py: same arguments, writes <output-root>/<experiment>/<stamp>/ with config.yaml and
# results.json whose numbers are simple functions of alpha, radius and seed. alpha=2 crashes on its first attempt
# only; alpha=3 always crashes; a crash leaves a checkpoint. Every call is appended to <output-root>/calls.txt.
FAKE_TOOL = '''
import argparse, json, sys
from pathlib import Path
from isl.config import dump_yaml, load_config
p = argparse.ArgumentParser()
for flag in ("--cfg", "--output-root", "--resume", "--data-root"):
    p.add_argument(flag)
p.add_argument("--set", nargs="*", default=[])
a = p.parse_args()
cfg = load_config(a.cfg, a.set, output_root=a.output_root)
root = Path(a.output_root)
root.mkdir(parents=True, exist_ok=True)
with open(root / "calls.txt", "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\\n")
attempt = len((root / "calls.txt").read_text().splitlines())
alpha, radius, seed = cfg.isl.gan.alpha, cfg.isl.mining.radius, cfg.seed
if (alpha == 2.0 and attempt == 1) or alpha == 3.0:
    (root / cfg.experiment / f"stamp{attempt}" / "checkpoints").mkdir(parents=True)
    (root / cfg.experiment / f"stamp{attempt}" / "checkpoints" / "last.pt").write_text("half a run")
    raise SystemExit(f"fake crash (alpha {alpha}, attempt {attempt})")
run = root / cfg.experiment / f"stamp{attempt}"
run.mkdir(parents=True)
(run / "config.yaml").write_text(dump_yaml(cfg))
res = {"knn_acc": 0.5 + 0.1 * alpha + 0.01 * seed, "nmi": radius, "acc": 0.3 + 0.02 * seed, "ari": 0.1,
       "pair_precision": 0.5 * radius, "wall_time_s": 10.0 + seed, "method": "isl", "experiment": cfg.experiment,
       "seed": seed, "pairs": 7, "epochs": 1}
(run / "results.json").write_text(json.dumps(res))
'''


@pytest.fixture()
def fake_tool(tmp_path):
    path = tmp_path / "fake_tool.py"
    path.write_text(FAKE_TOOL)
    return str(path)


def _load_tool(name):
    module = importlib.import_module(f"isl.tools.{name}")
    return module


def _calls(out, spec_name, seed):
    path = Path(out) / "runs" / spec_name / f"seed={seed}" / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_expand_is_the_cartesian_product_times_seeds():
    grid = {"isl.gan.alpha": [0.5, 1, 2], "isl.mining.strategy": ["gan", "knn"], "isl.mining.radius": [0.7]}
    specs = expand(grid, [0, 3])
    expected = []
    for a in grid["isl.gan.alpha"]:            # first key slowest, seeds innermost
        for s in grid["isl.mining.strategy"]:
            for r in grid["isl.mining.radius"]:
                for seed in (0, 3):
                    combo = (("isl.gan.alpha", a), ("isl.mining.strategy", s), ("isl.mining.radius", r))
                    expected.append((combo, seed))
    assert [(sp.combo, sp.seed) for sp in specs] == expected
    assert len({sp.label for sp in specs}) == len(specs) == 12
    assert len({sp.name for sp in specs}) == 6
    assert specs[0].name == "alpha=0.5_strategy=gan_radius=0.7" and specs[1].label.endswith("__seed=3")
    assert specs[0].overrides(["train.epochs_first=2"]) == [
        "train.epochs_first=2", "isl.gan.alpha=0.5", "isl.mining.strategy=gan", "isl.mining.radius=0.7", "seed=0"]


def test_names_and_values():
    assert parse_grid_arg("isl.gan.alpha=0.5,1,2") == ("isl.gan.alpha", [0.5, 1, 2])
    assert parse_grid_arg("isl.mining.strategy=gan,none") == ("isl.mining.strategy", ["gan", "none"])
    # the same last component twice: names keep enough of the key to stay unique
    assert combo_name((("a.lr", 1), ("b.lr", 2))) == "a.lr=1_b.lr=2"
    assert [format_value(v) for v in (True, 0.5, "gan", [1, 2])] == ["true", "0.5", "gan", "[1, 2]"]
    for bad in ("isl.gan.alpha", "isl.gan.alpha="):
        with pytest.raises(SweepError):
            parse_grid_arg(bad)
    with pytest.raises(SweepError, match="twice"):
        expand({"isl.gan.alpha": [1, 1]}, [0])
    with pytest.raises(SweepError, match="seeds"):
        expand({"isl.gan.alpha": [1]}, [])


def test_unknown_grid_key_fails_before_anything_runs(tmp_path, fake_tool, capsys):
    ablate = _load_tool("ablate")
    out = tmp_path / "sweep"
    with pytest.raises(SweepError, match=r"unknown config key 'isl.gan.alpah'.*valid keys under isl.gan: alpha"):
        ablate.main(["--cfg", "digits.yaml", "--grid", "isl.gan.alpah=1,2", "--tool", fake_tool, "--out", str(out)])
    assert not out.exists()
    with pytest.raises(SweepError, match="radius"):  # a bad value is caught the same way
        grid = {"isl.mining.radius": [0.5, 3.0]}
        validate(Sweep("digits.yaml", grid), expand(grid, [0]))
    with pytest.raises(SweepError, match="both swept"):
        sweep = Sweep("digits.yaml", {"isl.gan.alpha": [1]}, fixed=["isl.gan.alpha=2"])
        validate(sweep, expand(sweep.grid, [0]))
    with pytest.raises(SweepError, match="--seeds"):
        validate(Sweep("digits.yaml", {"seed": [1]}), expand({"seed": [1]}, [0]))
    with pytest.raises(SweepError):
        tool_command(str(tmp_path / "missing.py"))


def test_resumption_skips_finished_runs(tmp_path, fake_tool):
    out = tmp_path / "sweep"
    sweep = Sweep("digits.yaml", {"isl.gan.alpha": [0.5, 1.0]}, seeds=[0], tool=fake_tool, out=str(out))
    first = execute(sweep, progress=lambda *_: None)
    assert sorted(first["done"]) == ["alpha=0.5__seed=0", "alpha=1.0__seed=0"] and not first["skipped"]
    sweep.seeds = [0, 1]                        # grow the sweep: only the new seed runs
    second = execute(sweep, progress=lambda *_: None)
    assert sorted(second["skipped"]) == ["alpha=0.5__seed=0", "alpha=1.0__seed=0"]
    assert sorted(second["done"]) == ["alpha=0.5__seed=1", "alpha=1.0__seed=1"]
    assert len(_calls(out, "alpha=0.5", 0)) == 1 and len(_calls(out, "alpha=0.5", 1)) == 1
    for entry in second["runs"]:
        assert (Path(entry["run_root"]) / "calls.txt").is_file()
    assert json.loads((out / "sweep.json").read_text())["grid"] == {"isl.gan.alpha": [0.5, 1.0]}


def test_crash_is_retried_once_then_reported_and_the_sweep_goes_on(tmp_path, fake_tool):
    ablate = _load_tool("ablate")
    out = tmp_path / "sweep"
    res = ablate.main(["--cfg", "digits.yaml", "--grid", "isl.gan.alpha=1,2,3", "--seeds", "0,1", "--workers", "2",
                       "--tool", fake_tool, "--out", str(out), "--set", "experiment=fake_sweep"])
    assert sorted(res["done"]) == ["alpha=1__seed=0", "alpha=1__seed=1"]
    assert sorted(res["retried"]) == ["alpha=2__seed=0", "alpha=2__seed=1"]
    assert sorted(res["failed"]) == ["alpha=3__seed=0", "alpha=3__seed=1"]
    assert len(_calls(out, "alpha=2", 0)) == 2 and len(_calls(out, "alpha=3", 1)) == 2  # retried exactly once
    assert not any("--resume" in c for c in _calls(out, "alpha=2", 0))  # only train_isl is resumed
    log = (out / "logs" / "alpha=3__seed=0.log").read_text()
    assert "attempt 1" in log and "attempt 2" in log and "fake crash" in log
    summary = json.loads((out / "summary.json").read_text())
    failed = [e for e in summary["runs"] if e["status"] == "failed"]
    assert len(failed) == 2 and all(e["attempts"] == 2 and e["returncode"] != 0 for e in failed)
    assert any("fake crash" in line for line in failed[0]["log_tail"])
    md = (out / "results.md").read_text()
    assert "alpha=3__seed=0" in md and "Failed runs" in md
    # rerunning: finished runs are skipped, the failed ones get two more attempts
    again = ablate.main(["--cfg", "digits.yaml", "--grid", "isl.gan.alpha=1,2,3", "--seeds", "0,1",
                         "--tool", fake_tool, "--out", str(out), "--set", "experiment=fake_sweep"])
    assert len(again["skipped"]) == 4 and len(again["failed"]) == 2
    assert len(_calls(out, "alpha=1", 0)) == 1 and len(_calls(out, "alpha=3", 0)) == 4


def test_a_resumable_tool_continues_a_checkpoint_once(tmp_path, fake_tool, monkeypatch):
    import isl.experiments.sweep as sweep_module
    monkeypatch.setitem(sweep_module.TOOLS, "train_isl", Path(fake_tool))  # the fake stands in for train_isl
    out = tmp_path / "sweep"
    sweep = Sweep("digits.yaml", {"isl.gan.alpha": [2.0, 3.0]}, tool="train_isl", out=str(out))
    summary = execute(sweep, progress=lambda *_: None)
    assert summary["retried"] == ["alpha=2.0__seed=0"] and summary["failed"] == ["alpha=3.0__seed=0"]
    first, second = _calls(out, "alpha=2.0", 0)
    assert "--resume" not in first and "--resume auto" in second  # the crash left a checkpoint: continue it
    # always crashing: attempt 2 resumed and failed, so the next sweep resumes once more, then starts afresh
    execute(sweep, progress=lambda *_: None)
    calls = _calls(out, "alpha=3.0", 0)
    assert ["--resume auto" in c for c in calls] == [False, True, True, False]


def test_sweep_tables_hold_mean_and_std_over_seeds(tmp_path, fake_tool):
    ablate = _load_tool("ablate")
    out = tmp_path / "sweep"
    res = ablate.main(["--cfg", "digits.yaml", "--grid", "isl.gan.alpha=0.5,1", "isl.mining.radius=0.6,0.8",
                       "--seeds", "0,1,2", "--workers", "2", "--tool", fake_tool, "--out", str(out)])
    assert res["finished"] == 12 and not res["failed"]
    rows = read_rows(out / "results.csv")
    assert len(rows) == 4
    for row in rows:
        alpha, radius = float(row["isl.gan.alpha"]), float(row["isl.mining.radius"])
        knn = [0.5 + 0.1 * alpha + 0.01 * s for s in (0, 1, 2)]  # the fake tool's formula
        assert row["n"] == "3"
        assert float(row["knn_acc_mean"]) == pytest.approx(statistics.mean(knn))
        assert float(row["knn_acc_std"]) == pytest.approx(statistics.stdev(knn))
        assert float(row["nmi_mean"]) == pytest.approx(radius) and float(row["nmi_std"]) == pytest.approx(0.0)
        assert float(row["wall_time_s_mean"]) == pytest.approx(11.0)
    md = (out / "results.md").read_text()
    knn = [0.5 + 0.1 + 0.01 * s for s in (0, 1, 2)]
    assert f"| 1.0 | 0.8 | 3 | **{statistics.mean(knn):.3f} ± {statistics.stdev(knn):.3f}**" in md
    pngs = ["line_alpha.png", "line_radius.png", "heatmap_alpha_radius.png", "results_bars.png"]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in md
    assert len(read_rows(out / "runs.csv")) == 12


def test_sweep_file_and_flags(tmp_path, fake_tool):
    sweep_file = tmp_path / "mini.yaml"
    sweep_file.write_text(f"cfg: digits.yaml\ntool: {fake_tool}\nseeds: [4]\nworkers: 1\n"
                          "grid:\n  isl.mining.strategy: [gan, none]\nset: [experiment=mini]\n")
    assert load_sweep_file(sweep_file)["name"] == "mini"
    ablate = _load_tool("ablate")
    sweep, workers, _ = ablate.build_sweep(ablate.build_parser().parse_args(
        ["--sweep", str(sweep_file), "--workers", "3", "--set", "train.epochs_first=2", "--out", str(tmp_path / "o")]))
    assert sweep.seeds == [4] and workers == 3 and sweep.fixed == ["experiment=mini", "train.epochs_first=2"]
    assert sweep.grid == {"isl.mining.strategy": ["gan", "none"]}
    res = ablate.main(["--sweep", str(sweep_file), "--out", str(tmp_path / "o")])
    assert sorted(res["done"]) == ["strategy=gan__seed=4", "strategy=none__seed=4"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("cfg: digits.yaml\ngrid: {isl.gan.alpha: [1]}\nseedz: [1]\n")
    with pytest.raises(SweepError, match="seedz"):
        load_sweep_file(bad)


def test_shipped_sweep_files_validate():
    for name, runs in (("alpha_r_h", 27), ("digits_comparison", 9), ("cifar10_alpha_r_h", 27)):
        spec = load_sweep_file(ROOT / "configs" / "ablations" / f"{name}.yaml")
        sweep = Sweep(spec["cfg"], spec["grid"], spec["seeds"], spec.get("set", []), spec["tool"])
        specs = expand(sweep.grid, sweep.seeds)
        validate(sweep, specs)
        assert len(specs) == runs
        if name != "digits_comparison":
            assert all(len(v) >= 3 for v in sweep.grid.values())


def test_children_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert child_env(4)["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in child_env(1)
    assert child_env(1, threads_per_run=3)["OMP_NUM_THREADS"] == "3"
    assert str(ROOT) in child_env(1)["PYTHONPATH"]


def test_threads_per_run_reaches_the_runs(tmp_path, fake_tool, monkeypatch):
    """ablate --threads-per-run sets OMP_NUM_THREADS of every run (it was parsed and then dropped)."""
    seen = {}
    real_execute = _load_tool("ablate").execute

    def spy(sweep, **kwargs):
        seen.update(kwargs)
        return real_execute(sweep, **kwargs)

    ablate = _load_tool("ablate")
    monkeypatch.setattr(ablate, "execute", spy)
    ablate.main(["--cfg", "digits.yaml", "--tool", fake_tool, "--grid", "isl.gan.alpha=1", "--threads-per-run", "1",
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert seen["threads_per_run"] == 1 and seen["workers"] == 1


def test_variants_are_named_override_sets(tmp_path, fake_tool):
    specs = expand({"isl.gan.alpha": [1, 2]}, [0, 1], {"base": [], "wide": ["isl.mining.radius=0.9"]})
    assert [s.label for s in specs[:3]] == ["variant=base_alpha=1__seed=0", "variant=base_alpha=1__seed=1",
                                            "variant=base_alpha=2__seed=0"]
    wide = [s for s in specs if s.name.startswith("variant=wide")][0]
    assert wide.overrides(["experiment=v"]) == ["experiment=v", "isl.mining.radius=0.9", "isl.gan.alpha=1", "seed=0"]
    with pytest.raises(SweepError, match="also sweeps"):
        expand({"isl.gan.alpha": [1]}, [0], {"clash": ["isl.gan.alpha=2"]})
    sweep_file = tmp_path / "v.yaml"
    sweep_file.write_text(f"cfg: digits.yaml\ntool: {fake_tool}\nseeds: [0, 1]\n"
                          "variants:\n  narrow: [isl.mining.radius=0.3]\n  wide: [isl.mining.radius=0.9]\n"
                          "set: [experiment=v]\n")
    res = _load_tool("ablate").main(["--sweep", str(sweep_file), "--out", str(tmp_path / "o"), "--quiet"])
    assert res["finished"] == 4
    table = (tmp_path / "o" / "results.md").read_text()
    assert "| narrow | 2 |" in table and "| wide | 2 |" in table   # one row per variant; nmi = radius in the fake
    rows = read_rows(tmp_path / "o" / "results.csv")
    assert {r["variant"]: float(r["nmi_mean"]) for r in rows} == {"narrow": 0.3, "wide": 0.9}


def test_variants_flag_runs_the_named_variants_in_its_order(tmp_path, fake_tool):
    sweep_file = tmp_path / "v.yaml"
    sweep_file.write_text(f"cfg: digits.yaml\ntool: {fake_tool}\nseeds: [0, 1]\n"
                          "variants:\n  a: [isl.mining.radius=0.3]\n  b: [isl.mining.radius=0.5]\n"
                          "  c: [isl.mining.radius=0.9]\nset: [experiment=v]\n")
    ablate = _load_tool("ablate")
    out = str(tmp_path / "o")
    res = ablate.main(["--sweep", str(sweep_file), "--out", out, "--variants", "c,a", "--seeds", "0", "--quiet"])
    assert res["done"] == ["variant=c__seed=0", "variant=a__seed=0"] and res["finished"] == 2
    res = ablate.main(["--sweep", str(sweep_file), "--out", out, "--variants", "b", "--seeds", "0", "--quiet"])
    assert res["done"] == ["variant=b__seed=0"]
    rows = read_rows(tmp_path / "o" / "results.csv")
    assert sorted(r["variant"] for r in rows) == ["a", "b", "c"]   # the table gathers every finished variant
    with pytest.raises(SweepError, match="unknown variant.*'d'.*a, b, c"):
        ablate.main(["--sweep", str(sweep_file), "--out", out, "--variants", "a,d", "--dry-run"])
    with pytest.raises(SweepError, match="has none"):
        ablate.main(["--cfg", "digits.yaml", "--grid", "isl.gan.alpha=1", "--variants", "a", "--dry-run"])


def test_a_variant_may_start_from_its_own_config(tmp_path, fake_tool):
    wide = tmp_path / "wide.yaml"
    wide.write_text("_base_: digits.yaml\nisl: {mining: {radius: 0.7}}\n")
    sweep_file = tmp_path / "v.yaml"
    sweep_file.write_text(f"cfg: digits.yaml\ntool: {fake_tool}\nseeds: [0]\nset: [experiment=v]\nvariants:\n"
                          f"  narrow: [isl.mining.radius=0.3]\n  wide: {{cfg: {wide}}}\n"
                          f"  wider: {{cfg: {wide}, set: [isl.gan.alpha=0.5]}}\n")
    res = _load_tool("ablate").main(["--sweep", str(sweep_file), "--out", str(tmp_path / "o"), "--quiet"])
    assert res["finished"] == 3
    rows = {r["variant"]: r for r in read_rows(tmp_path / "o" / "results.csv")}
    assert {k: float(r["nmi_mean"]) for k, r in rows.items()} == {"narrow": 0.3, "wide": 0.7, "wider": 0.7}
    assert float(rows["wider"]["knn_acc_mean"]) == pytest.approx(0.55)            # its own `set` on top of its cfg
    calls = (tmp_path / "o" / "runs" / "variant=wide" / "seed=0" / "calls.txt").read_text()
    assert f"--cfg {wide.resolve()}" in calls
    assert "base `" in (tmp_path / "o" / "results.md").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"cfg: digits.yaml\ntool: {fake_tool}\nvariants:\n  x: {{cfg: digits.yaml, sett: []}}\n")
    with pytest.raises(SweepError, match="unknown keys.*sett"):
        _load_tool("ablate").main(["--sweep", str(bad), "--dry-run"])


def test_the_supervised_fashion_mnist_sweep_validates():
    ablate = _load_tool("ablate")
    sweep, _, _ = ablate.build_sweep(ablate.build_parser().parse_args(
        ["--sweep", str(ROOT / "configs" / "ablations" / "fashion_mnist_supervised.yaml")]))
    specs = expand(sweep.grid, sweep.seeds, sweep.variants, sweep.variant_cfgs)
    validate(sweep, specs)
    assert len(specs) == 6 and {s.cfg for s in specs} == {None, "baselines/proxy_anchor.yaml"}
    assert sweep.tool == "train_baseline" and sweep.data == "fashion_mnist"


@pytest.mark.parametrize("name", ["digits_gan_mining", "fashion_mnist_gan_mining"])
def test_gan_mining_sweeps_validate(name):
    spec = load_sweep_file(ROOT / "configs" / "ablations" / f"{name}.yaml")
    sweep = Sweep(spec["cfg"], spec.get("grid") or {}, spec["seeds"], spec.get("set", []), spec["tool"],
                  variants=spec["variants"])
    specs = expand(sweep.grid, sweep.seeds, sweep.variants)
    validate(sweep, specs)
    assert len(specs) == 3 * 13   # 3 seeds x 13 variants
    assert "gan_directed" in sweep.variants   # the growth-rate row of the GAN issue


def test_dry_run_says_which_runs_are_finished_resumable_or_to_run_and_estimates_the_rest(tmp_path, capsys):
    sweep_file = tmp_path / "v.yaml"
    sweep_file.write_text("cfg: digits.yaml\nseeds: [0, 1]\nset: [experiment=v]\n"
                          "variants:\n  a: [isl.mining.radius=0.3]\n  b: [isl.mining.radius=0.5]\n")
    out = tmp_path / "o"
    runs = out / "runs"
    for name, seed, seconds in (("variant=a", 0, 100.0), ("variant=b", 0, 300.0)):
        (runs / name / f"seed={seed}" / "v" / "t").mkdir(parents=True)
        (runs / name / f"seed={seed}" / "v" / "t" / "results.json").write_text(
            json.dumps({"wall_time_s": seconds, "epochs": 20}))
    (runs / "variant=b" / "seed=1" / "v" / "t" / "checkpoints").mkdir(parents=True)
    (runs / "variant=b" / "seed=1" / "v" / "t" / "checkpoints" / "last.pt").write_bytes(b"")
    (runs / "variant=b" / "seed=1" / "v" / "t" / "metrics.jsonl").write_text(  # stopped after epoch 15 of 20
        "".join(json.dumps({"stage": "encoder", "global_epoch": e}) + "\n" for e in range(1, 16)) + "{broken\n")
    res = _load_tool("ablate").main(["--sweep", str(sweep_file), "--out", str(out), "--dry-run"])
    assert res["states"] == {"variant=a__seed=0": "finished", "variant=a__seed=1": "to run",
                             "variant=b__seed=0": "finished", "variant=b__seed=1": "resumable"}
    assert res["counts"] == {"finished": 2, "running": 0, "resumable": 1, "to run": 1}
    assert res["estimate_s"] == pytest.approx(100.0 + 300.0 / 4)  # own variant's time; b's last quarter
    printed = capsys.readouterr().out
    assert "[resumable] variant=b__seed=1" in printed and "2 finished, 1 resumable" in printed
    res = _load_tool("ablate").main(["--sweep", str(sweep_file), "--out", str(out), "--dry-run", "--workers", "2",
                                     "--seeds", "0,1,2"])
    assert res["estimate_s"] == pytest.approx((100 + 100 + 300 / 4 + 300) / 2)
    assert not (out / "logs").exists()                          # a dry run starts nothing
    empty = _load_tool("ablate").main(["--sweep", str(sweep_file), "--out", str(tmp_path / "new"), "--dry-run"])
    assert empty["counts"]["to run"] == 4 and empty["unestimated"] == 4 and empty["estimate_s"] == 0


def test_a_run_another_sweep_holds_is_busy_not_trained_twice_and_dry_run_says_running(tmp_path, fake_tool, capsys):
    from isl.experiments.sweep import run_lock
    out = tmp_path / "sweep"
    sweep = Sweep("digits.yaml", {"isl.gan.alpha": [0.5, 1.0]}, seeds=[0], tool=fake_tool, out=str(out))
    held_root = out / "runs" / "alpha=0.5" / "seed=0"
    with run_lock(held_root) as held:           # stands in for a second sweep process working on alpha=0.5
        assert held
        with run_lock(held_root) as again:      # a separate open file: flock refuses it, as it would another process
            assert not again
        summary = execute(sweep, progress=lambda *_: None)
        assert summary["busy"] == ["alpha=0.5__seed=0"] and summary["done"] == ["alpha=1.0__seed=0"]
        assert not _calls(out, "alpha=0.5", 0)                      # not started beside the holder
        sweep_file = tmp_path / "s.yaml"
        sweep_file.write_text(f"cfg: digits.yaml\ngrid:\n  isl.gan.alpha: [0.5, 1.0]\ntool: {fake_tool}\n")
        res = _load_tool("ablate").main(["--sweep", str(sweep_file), "--out", str(out), "--dry-run"])
        assert res["states"] == {"alpha=0.5__seed=0": "running", "alpha=1.0__seed=0": "finished"}
        assert "[running] alpha=0.5__seed=0" in capsys.readouterr().out
    assert execute(sweep, progress=lambda *_: None)["done"] == ["alpha=0.5__seed=0"]   # released: it runs now


def test_a_killed_sweep_leaves_no_stale_lock(tmp_path):
    import subprocess
    import sys
    from isl.experiments.sweep import is_running
    run_root = tmp_path / "runs" / "a" / "seed=0"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from isl.experiments.sweep import run_lock\n"
                               f"with run_lock(Path({str(run_root)!r})):\n    print('held', flush=True); time.sleep(60)\n"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_running(run_root)
    finally:
        holder.kill()
        holder.wait()
    assert not is_running(run_root)   # the operating system dropped the lock with the process
