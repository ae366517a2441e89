"""tools/report.py on hand-written fake runs: the comparison table (markdown + CSV, mean ± std over seeds, wall
time, pair precision), the bar chart, sweep folders grouped by their swept keys, and per-round curves."""
import importlib
import json
import re
import statistics
from pathlib import Path

import pytest
import yaml

from csv_helpers import read_rows

PNG = b"\x89PNG\r\n\x1a\n"


def _report():
    module = importlib.import_module("isl.tools.report")
    return module


def fake_run(path, results, config=None, records=None):
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(results))
    if config is not None:
        (path / "config.yaml").write_text(yaml.safe_dump(config))
    if records is not None:
        (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


SCORES = {  # method -> experiment, per-seed (knn_acc, nmi, acc, ari, pair_precision, wall_time_s)
    "isl": ("digits_comparison", [(0.95, 0.85, 0.80, 0.70, 0.90, 100.0), (0.96, 0.88, 0.82, 0.72, 0.80, 110.0),
                                  (0.94, 0.86, 0.79, 0.69, 0.85, 105.0)]),
    "npid": ("digits_comparison", [(0.93, 0.80, 0.75, 0.65, None, 80.0), (0.92, 0.81, 0.74, 0.64, None, 82.0)]),
    "triplet": ("digits_triplet", [(0.99, 0.95, 0.97, 0.94, None, 30.0)]),
}
KEYS = ("knn_acc", "nmi", "acc", "ari", "pair_precision", "wall_time_s")


@pytest.fixture()
def runs(tmp_path):
    for method, (experiment, per_seed) in SCORES.items():
        for seed, values in enumerate(per_seed):
            fake_run(tmp_path / "runs" / experiment / f"{method}-{seed}",
                     {**dict(zip(KEYS, values)), "method": method, "experiment": experiment, "seed": seed},
                     {"experiment": experiment, "seed": seed, "isl": {"gan": {"alpha": 1.0}}})
    return tmp_path / "runs"


def test_comparison_table_csv_and_bar_chart(runs, tmp_path):
    out = tmp_path / "docs" / "results.md"
    res = _report().main([str(runs), "--out", str(out), "--title", "Digits comparison"])
    assert res["group_by"] == ["method", "experiment"] and res["rows"] == 6
    md = out.read_text()
    assert md.startswith("# Digits comparison")
    assets = tmp_path / "docs" / "results"
    table = read_rows(assets / "report.csv")
    assert [r["method"] for r in table] == ["isl", "npid", "triplet"]
    for row in table:
        experiment, per_seed = SCORES[row["method"]]
        assert row["experiment"] == experiment and row["n"] == str(len(per_seed))
        for i, key in enumerate(KEYS):
            values = [v[i] for v in per_seed if v[i] is not None]
            if not values:
                assert row[f"{key}_mean"] == "" and row[f"{key}_std"] == ""
                continue
            assert float(row[f"{key}_mean"]) == pytest.approx(statistics.mean(values))
            if len(values) > 1:
                assert float(row[f"{key}_std"]) == pytest.approx(statistics.stdev(values))
    isl = SCORES["isl"][1]
    knn, prec, wall = [v[0] for v in isl], [v[4] for v in isl], [v[5] for v in isl]
    line = next(line for line in md.splitlines() if line.startswith("| isl |"))
    assert f"{statistics.mean(knn):.3f} ± {statistics.stdev(knn):.3f}" in line
    assert f"**{statistics.mean(prec):.3f} ± {statistics.stdev(prec):.3f}**" not in line  # only one method mines
    assert f"{statistics.mean(prec):.3f} ± {statistics.stdev(prec):.3f}" in line
    assert f"{statistics.mean(wall):.0f} ± {statistics.stdev(wall):.0f} |" in line
    # bold compares only rows with the most seeds: isl alone has 3, so nothing is bold, not triplet's one seed
    assert "| triplet | digits_triplet | 1 | 0.990 |" in md and "**" not in md
    assert (assets / "report_bars.png").read_bytes()[:8] == PNG and "](results/report_bars.png)" in md
    assert len(read_rows(assets / "runs.csv")) == 6


def test_out_folder_and_group_by(runs, tmp_path):
    res = _report().main([str(runs / "digits_comparison"), "--out", str(tmp_path / "rep"), "--group-by", "seed"])
    assert (tmp_path / "rep" / "report.md").is_file() and res["group_by"] == ["seed"]
    seeds = [g["seed"] for g in res["groups"]]
    assert seeds == [0, 1, 2] and [g["n"] for g in res["groups"]] == [2, 2, 1]


def test_sweep_folder_is_grouped_by_its_swept_keys(tmp_path):
    sweep = tmp_path / "sweep"
    grid = {"isl.gan.alpha": [0.5, 2.0], "isl.mining.strategy": ["gan"], "isl.mining.radius": [0.5, 0.9]}
    (tmp_path / "sweep").mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"grid": grid}))
    for alpha in grid["isl.gan.alpha"]:
        for radius in grid["isl.mining.radius"]:
            for seed in (0, 1):
                cfg = {"seed": seed, "isl": {"gan": {"alpha": alpha}, "mining": {"radius": radius, "strategy": "gan"}}}
                fake_run(sweep / "runs" / f"a{alpha}_r{radius}" / f"seed={seed}" / "x" / "stamp",
                         {"knn_acc": alpha / 4 + radius / 10 + seed / 100, "nmi": radius, "acc": 0.5, "ari": 0.4,
                          "pair_precision": radius, "method": "isl", "experiment": "x", "seed": seed}, cfg)
    res = _report().main([str(sweep), "--out", str(tmp_path / "rep")])
    # strategy is the same everywhere (and method already splits it): not a grouping column
    assert res["group_by"] == ["method", "experiment", "isl.gan.alpha", "isl.mining.radius"]
    assert len(res["groups"]) == 4 and all(g["n"] == 2 for g in res["groups"])
    g = next(g for g in res["groups"] if g["isl.gan.alpha"] == 2.0 and g["isl.mining.radius"] == 0.9)
    assert g["knn_acc_mean"] == pytest.approx(statistics.mean([0.5 + 0.09, 0.5 + 0.09 + 0.01]))
    for name in ("line_alpha.png", "line_radius.png", "heatmap_alpha_radius.png"):
        assert (tmp_path / "rep" / name).read_bytes()[:8] == PNG


def test_curves_section(tmp_path):
    records = [{"stage": "encoder", "round": 0, "epoch": 1, "global_epoch": 1, "l1": 5.0, "l2": 0.5, "loss": 5.2,
                "pairs": 0, "pair_precision": None, "knn_acc": 0.6, "nmi": 0.5},
               {"stage": "gan", "round": 1, "epoch": 1, "d_loss": 1.3, "g_loss": 0.7, "heldout_d_loss": 1.35},
               {"stage": "gan", "round": 1, "epoch": 2, "d_loss": 1.1, "g_loss": 0.9, "heldout_d_loss": 1.2},
               {"stage": "mining", "round": 1, "pass": 1, "new_pairs": 40, "pairs": 40, "pair_precision": 0.75},
               {"stage": "encoder", "round": 1, "epoch": 1, "global_epoch": 2, "l1": 4.0, "l2": 0.4, "loss": 4.2,
                "pairs": 40, "pair_precision": 0.75, "knn_acc": 0.7, "nmi": 0.6},
               {"stage": "final", "knn_acc": 0.7}]
    run = fake_run(tmp_path / "runs" / "digits_isl" / "stamp", {"knn_acc": 0.7, "method": "isl"}, records=records)
    res = _report().main(["--curves", str(run), "--out", str(tmp_path / "rep")])
    md = Path(res["markdown"]).read_text()
    assert "| 1 | 2 | 1.100 | 0.900 | 40 | 40 | 0.750 | 0.700 | 0.600 |" in md
    assert (tmp_path / "rep" / "curves_digits_isl_stamp.png").read_bytes()[:8] == PNG
    rounds = read_rows(tmp_path / "rep" / "rounds_digits_isl_stamp.csv")
    assert [r["new_pairs"] for r in rounds] == ["0", "40"]


def test_nothing_to_report_is_an_error(tmp_path):
    from isl.config import ConfigError
    with pytest.raises(ConfigError, match="give run directories"):
        _report().main([])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no finished runs"):
        _report().main([str(empty), "--out", str(tmp_path / "rep")])


def test_published_rows_are_marked_and_sourced(runs, tmp_path):
    pub = tmp_path / "pub.yaml"
    pub.write_text(yaml.safe_dump({"dataset": "digits_comparison", "rows": [
        {"method": "N2D", "acc": 0.672, "nmi": 0.684, "source": "McConville et al."}]}))
    out = tmp_path / "r.md"
    res = _report().main([str(runs), "--published", str(pub), "--out", str(out)])
    assert res["rows"] == 7
    md = out.read_text()
    row = next(line for line in md.splitlines() if line.startswith("| N2D (published)"))
    assert "0.684" in row and "0.672" in row
    assert "- N2D (published): McConville et al." in md
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"rows": [{"method": "x", "nmi": 0.5}]}))
    with pytest.raises(ValueError, match="source"):
        _report().main(["--published", str(bad), "--out", str(tmp_path / "b.md")])


def test_runs_of_different_schedules_are_not_pooled(tmp_path):
    """The issue's case: a 50-epoch baseline run and a 10-epoch sweep cell of the same experiment, next to ISL
    runs: two baseline groups labelled by the epochs, no GAN alpha on baseline rows, seeds still pooled."""
    runs = tmp_path / "runs"
    base = {"experiment": "digits_baseline_triplet", "isl": {"gan": {"alpha": 1.0}, "mining": {"strategy": "gan"}},
            "train": {"epochs_first": 20}, "data": {"root": "/somewhere"}}
    for epochs, seeds in ((50, (0,)), (10, (0, 1))):
        for seed in seeds:
            cfg = {**base, "seed": seed, "baseline": {"epochs": epochs, "loss": "triplet"},
                   "data": {"root": f"/machine{seed}"}}  # machine paths never split a group
            fake_run(runs / f"b{epochs}-{seed}", {"knn_acc": 0.9 + epochs / 1000, "method": "baseline:triplet",
                                                 "experiment": "digits_baseline_triplet", "seed": seed}, cfg)
    for alpha in (0.5, 2.0):
        cfg = {**base, "experiment": "digits_isl", "seed": 0, "isl": {"gan": {"alpha": alpha},
                                                                       "mining": {"strategy": "gan"}},
               "baseline": {"epochs": 50, "loss": "triplet"}}
        fake_run(runs / f"isl-{alpha}", {"knn_acc": 0.8, "method": "isl", "experiment": "digits_isl", "seed": 0}, cfg)
    res = _report().main([str(runs), "--out", str(tmp_path / "rep")])
    assert res["group_by"] == ["method", "experiment", "isl.gan.alpha", "baseline.epochs"]
    groups = {(g["method"], g["isl.gan.alpha"], g["baseline.epochs"]): g["n"] for g in res["groups"]}
    assert groups == {("baseline:triplet", None, 10): 2, ("baseline:triplet", None, 50): 1,
                      ("isl", 0.5, None): 1, ("isl", 2.0, None): 1}
    md = Path(res["markdown"]).read_text()
    assert "| method | experiment | alpha | epochs | n |" in md
    assert "| baseline:triplet | digits_baseline_triplet |  | 10 | 2 |" in md   # no alpha on a baseline row
    assert "| isl | digits_isl | 0.5 |  | 1 |" in md                          # no baseline epochs on ISL


def test_explicit_group_by_names_what_it_pools(tmp_path, capsys):
    runs = tmp_path / "runs"
    for epochs in (10, 50):
        fake_run(runs / f"r{epochs}", {"knn_acc": 0.9, "method": "baseline:triplet", "experiment": "x", "seed": 0},
                 {"experiment": "x", "seed": 0, "baseline": {"epochs": epochs}})
    res = _report().main([str(runs), "--out", str(tmp_path / "rep"), "--group-by", "method,experiment"])
    assert [g["n"] for g in res["groups"]] == [2]
    assert "pools runs that differ in baseline.epochs" in Path(res["markdown"]).read_text()
    assert "warning:" in capsys.readouterr().out


def test_group_label_leaves_out_missing_values():
    from isl.experiments.summary import group_label
    by = ["method", "experiment", "isl.gan.alpha"]
    raw = {"method": "raw_pixels", "experiment": "digits", "isl.gan.alpha": None}
    assert group_label(raw, by) == "raw_pixels digits"
    assert group_label({"method": "isl", "experiment": "d", "isl.gan.alpha": 2.0}, by) == "isl d alpha=2.0"


def test_archive_copies_only_small_result_files(runs, tmp_path):
    run = next(runs.rglob("results.json")).parent
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "events.out.tfevents.1").write_bytes(b"x")
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, "run_dir": str(run.resolve())}))  # as RunDir writes it
    archive = tmp_path / "archive"
    _report().main([str(runs), "--archive", str(archive), "--out", str(tmp_path / "r.md")])
    copied = {p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()}
    assert len([c for c in copied if c.endswith("results.json")]) == 6
    assert not any("checkpoints" in c or "tfevents" in c for c in copied)
    archived = archive / run.relative_to(runs) / "results.json"  # names its archived folder, not where it ran
    assert json.loads(archived.read_text())["run_dir"] == archived.parent.as_posix()
    again = _report().main([str(archive), "--out", str(tmp_path / "r2.md")])  # the table rebuilds from the archive
    assert again["rows"] == 6


def test_by_round_tables_average_each_round_over_seeds(tmp_path):
    def records(seed):
        out = []
        for r, g in ((0, 10), (1, 16), (2, 22)):
            nmi = 0.5 - 0.05 * r + 0.01 * seed
            out.append({"stage": "encoder", "round": r, "epoch": 1, "global_epoch": g, "knn_acc": 0.7 + r / 100,
                        "linear_acc": 0.8, "nmi": nmi, "acc": 0.6, "ari": 0.3, "pair_precision": None if r == 0
                        else 0.7, **({"val_nmi": nmi + 0.01} if seed else {})})
        return out + [{"stage": "final", "knn_acc": 0.72}]

    for seed in (0, 1, 2):
        fake_run(tmp_path / "runs" / f"s{seed}", {"method": "knn_mining", "experiment": "fm", "seed": seed,
                                                  "knn_acc": 0.72}, records=records(seed))
    fake_run(tmp_path / "runs" / "old", {"method": "npid", "experiment": "fm", "seed": 0, "knn_acc": 0.7})
    res = _report().main([str(tmp_path / "runs"), "--by-round", "--out", str(tmp_path / "rep")])
    md = Path(res["markdown"]).read_text().split("## Scores at the end of each round")[1]
    test_part, held_out = md.split("Held-out scores at the end of each round")
    nmi = {r: [0.5 - 0.05 * r + 0.01 * s for s in (0, 1, 2)] for r in (0, 1, 2)}
    assert (f"| knn_mining | fm | 2 | 3 | 22 ± 0 | 0.720 ± 0.000 | 0.800 ± 0.000 | {statistics.mean(nmi[2]):.3f} ± "
            f"{statistics.stdev(nmi[2]):.3f} |") in test_part
    assert "| knn_mining | fm | 0 | 3 | 10 ± 0 | 0.700 ± 0.000 |" in test_part and test_part.count("| – |") == 1
    assert "npid" not in md  # no metrics.jsonl: no per-round scores
    val = [x + 0.01 for x in nmi[1][1:]]  # seed 0 has no held-out scores: n = 2
    row = f"| knn_mining | fm | 1 | 2 | 16 ± 0 | {statistics.mean(val):.3f} ± {statistics.stdev(val):.3f} |"
    assert row in held_out
    rows = read_rows(tmp_path / "rep" / "rounds.csv")
    assert [(r["round"], r["n"]) for r in rows if r["method"] == "knn_mining"] == [("0", "3"), ("1", "3"), ("2", "3")]
    assert float(rows[2]["nmi_mean"]) == pytest.approx(statistics.mean(nmi[2]))
    assert "D AUC" not in test_part  # no GAN run: no D columns


def test_by_round_tables_show_each_rounds_discriminator_auc(tmp_path):
    """A GAN run's per-round D AUCs come from its gan_diag records, the mean over seeds per round."""
    for seed, aucs in ((0, (0.51, 0.67)), (1, (0.55, 0.71))):
        recs = [{"stage": "encoder", "round": 0, "global_epoch": 10, "knn_acc": 0.7, "nmi": 0.5}]
        for r, auc in enumerate(aucs, start=1):
            recs += [{"stage": "gan_diag", "round": r, "heldout_auc": auc, "fresh_d_auc": 1.0},
                     {"stage": "encoder", "round": r, "global_epoch": 10 + 6 * r, "knn_acc": 0.7, "nmi": 0.5}]
        fake_run(tmp_path / "runs" / f"variant=gan_x/seed={seed}", {"method": "isl", "experiment": "fm",
                                                                   "seed": seed, "knn_acc": 0.7}, records=recs)
    res = _report().main([str(tmp_path / "runs"), "--by-round", "--group-by", "variant", "--out",
                          str(tmp_path / "rep")])
    md = Path(res["markdown"]).read_text().split("## Scores at the end of each round")[1]
    assert "| variant | round | n | epochs |" in md and "| D AUC | fresh-D AUC |" in md
    assert md.count("| gan_x | 0 | 2 | 10 ± 0 |") == 1 and "| – | – |" in md  # round 0: no GAN stage yet
    assert "| 0.530 ± 0.028 | 1.000 ± 0.000 |" in md and "| 0.690 ± 0.028 | 1.000 ± 0.000 |" in md


def test_paired_section_compares_each_seed_with_its_reference_run(tmp_path):
    from isl.config import ConfigError
    for seed in (0, 1):
        for variant, nmi in (("knn", 0.50), ("gan", 0.47)):
            recs = [{"stage": "encoder", "round": r, "global_epoch": 10 * (r + 1), "knn_acc": 0.7,
                     "nmi": 0.5 if r == 0 else nmi + 0.01 * seed} for r in (0, 1)]
            fake_run(tmp_path / "runs" / f"variant={variant}" / f"seed={seed}",
                     {"method": "isl", "experiment": "fm", "seed": seed, "knn_acc": 0.7, "nmi": nmi + 0.01 * seed},
                     records=recs)
    res = _report().main([str(tmp_path / "runs"), "--group-by", "variant", "--paired", "variant=knn", "--by-round",
                          "--out", str(tmp_path / "rep")])
    md = Path(res["markdown"]).read_text().split("## Paired by seed against variant=knn")[1]
    assert "| gan | 0,1 | +0.000 ± 0.000 (0/2) | – | -0.030 ± 0.000 (0/2) |" in md
    assert "| gan | 0 | 0,1 | +0.000 ± 0.000 (0/2) | – | +0.000 ± 0.000 (0/2) |" in md   # round 0 shared
    assert "| gan | 1 | 0,1 | +0.000 ± 0.000 (0/2) | – | -0.030 ± 0.000 (0/2) |" in md
    assert "| knn |" not in md
    assert (tmp_path / "rep" / "paired.csv").is_file() and (tmp_path / "rep" / "paired_rounds.csv").is_file()
    with pytest.raises(ConfigError, match="matches no run"):
        _report().main([str(tmp_path / "runs"), "--paired", "variant=npid", "--out", str(tmp_path / "rep2")])
    res = _report().main([str(tmp_path / "runs"), "--group-by", "variant", "--paired", "variant=knn", "--by-round",
                          "--p-adjust", "holm", "--out", str(tmp_path / "rep3")])
    assert "Holm = the p-value after Holm's correction" in Path(res["markdown"]).read_text()
    for name in ("paired.csv", "paired_rounds.csv"):
        assert "nmi_p_adj" in (tmp_path / "rep3" / name).read_text().splitlines()[0]
    res = _report().main([str(tmp_path / "runs"), "--group-by", "variant", "--paired", "variant=knn", "--by-round",
                          "--p-adjust", "holm", "--p-family", "table", "--out", str(tmp_path / "rep4")])
    assert "correction for every p-value in its table" in Path(res["markdown"]).read_text()
    with pytest.raises(ConfigError, match="give --paired KEY=VALUE with --p-adjust"):
        _report().main([str(tmp_path / "runs"), "--p-adjust", "holm", "--out", str(tmp_path / "rep5")])
    with pytest.raises(ConfigError, match=re.escape("--p-adjust holm|bh with --p-family")):
        _report().main([str(tmp_path / "runs"), "--paired", "variant=knn", "--p-family", "table",
                        "--out", str(tmp_path / "rep6")])
