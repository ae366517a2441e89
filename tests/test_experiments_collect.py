"""Collection of finished runs: rows from hand-written run directories, mean / std over seeds, tables, and the
per-round summary of a metrics.jsonl."""
import json
import math
import statistics

import pytest
import yaml

from isl.experiments.collect import (aggregate, collect, find_run_dirs, flatten, format_mean_std, markdown_table,
                                     mean_std, round_table, short_names, sweep_variant, write_csv)

from csv_helpers import read_rows


def fake_run(root, name, results, config=None, records=None):
    """A run directory as tools/train_isl.py leaves it (results.json, config.yaml, metrics.jsonl)."""
    run = root / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(results))
    if config is not None:
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    if records is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_flatten_and_short_names():
    assert flatten({"isl": {"gan": {"alpha": 2}, "lam": 0.5}, "seed": 1, "baseline": {"loss_kwargs": {"m": 1}}}) == {
        "isl.gan.alpha": 2, "isl.lam": 0.5, "seed": 1, "baseline.loss_kwargs": {"m": 1}}
    assert short_names(["isl.gan.alpha", "isl.mining.radius"]) == {"isl.gan.alpha": "alpha",
                                                                    "isl.mining.radius": "radius"}
    assert short_names(["isl.gan.lr", "optim.lr", "seed"]) == {"isl.gan.lr": "gan.lr", "optim.lr": "optim.lr",
                                                               "seed": "seed"}


def test_collect_reads_results_and_config(tmp_path):
    fake_run(tmp_path / "a" / "exp", "t1", {"knn_acc": 0.9, "seed": 0}, {"isl": {"gan": {"alpha": 2.0}}, "seed": 0})
    fake_run(tmp_path / "b", "t2", {"knn_acc": 0.8, "seed": 1})  # no config.yaml: results only
    (tmp_path / "a" / "exp" / "unfinished").mkdir()               # no results.json: not a finished run
    assert [p.name for p in find_run_dirs([tmp_path])] == ["t1", "t2"]
    rows = collect([tmp_path / "a", tmp_path / "b" / "t2" / "results.json"])
    assert rows[0]["isl.gan.alpha"] == 2.0 and rows[0]["knn_acc"] == 0.9 and rows[0]["run_dir"].endswith("t1")
    assert rows[1] == {"knn_acc": 0.8, "seed": 1, "run_dir": str(tmp_path / "b" / "t2")}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect([tmp_path / "nowhere"])


def test_rows_of_a_sweep_variant_carry_its_name(tmp_path):
    """tools/ablate.py's layout runs/variant=<name>/seed=<s>/<experiment>/<stamp>: the row gets `variant`, which
    --group-by can use; a folder naming grid values too is read through the sweep's sweep.json."""
    sweep = tmp_path / "sweep"
    fake_run(sweep / "runs" / "variant=gan_all" / "seed=0" / "exp", "t1", {"nmi": 0.5, "seed": 0})
    fake_run(sweep / "runs" / "variant=gan_all_alpha=0.5" / "seed=1" / "exp", "t2", {"nmi": 0.4, "seed": 1})
    fake_run(tmp_path / "plain" / "exp", "t3", {"nmi": 0.3, "seed": 0})
    fake_run(tmp_path / "own" / "variant=x" / "exp", "t4", {"nmi": 0.2, "variant": "from_results"})
    rows = {r["run_dir"].split("/")[-1]: r for r in collect([tmp_path])}
    assert rows["t1"]["variant"] == "gan_all"
    assert "variant" not in rows["t2"]                      # ambiguous without sweep.json
    assert "variant" not in rows["t3"]
    assert rows["t4"]["variant"] == "from_results"          # a run's own results.json wins
    (sweep / "sweep.json").write_text(json.dumps({"variants": {"gan": [], "gan_all": ["a=1"]}}))
    assert sweep_variant(sweep / "runs" / "variant=gan_all_alpha=0.5" / "seed=1" / "exp" / "t2") == "gan_all"
    assert collect([sweep / "runs" / "variant=gan_all_alpha=0.5"])[0]["variant"] == "gan_all"


def test_mean_std_matches_statistics_and_skips_missing():
    values = [0.81, 0.85, 0.9]
    mean, std, n = mean_std(values + [None, float("nan"), "x"])
    assert n == 3 and mean == pytest.approx(statistics.mean(values)) and std == pytest.approx(statistics.stdev(values))
    mean, std, n = mean_std([0.5])
    assert (mean, n) == (0.5, 1) and math.isnan(std)
    mean, std, n = mean_std([None])
    assert n == 0 and math.isnan(mean) and math.isnan(std)


def test_aggregate_groups_by_method_over_seeds(tmp_path):
    rows = []
    scores = {"isl": [0.90, 0.92, 0.95], "npid": [0.80, 0.84, 0.83], "triplet": [0.97]}
    for method, values in scores.items():
        for seed, v in enumerate(values):
            rows.append({"method": method, "experiment": "digits", "seed": seed, "knn_acc": v, "nmi": v / 2,
                         "pair_precision": None if method != "isl" else 0.5 + seed / 10, "wall_time_s": 10 * seed})
    groups = aggregate(rows, ["method", "experiment"])
    assert [g["method"] for g in groups] == ["isl", "npid", "triplet"]  # sorted
    for g in groups:
        values = scores[g["method"]]
        assert g["n"] == len(values) and g["seeds"] == list(range(len(values)))
        assert g["knn_acc_mean"] == pytest.approx(statistics.mean(values))
        assert g["nmi_mean"] == pytest.approx(statistics.mean(values) / 2)
        if len(values) > 1:
            assert g["knn_acc_std"] == pytest.approx(statistics.stdev(values))
        else:
            assert math.isnan(g["knn_acc_std"])
    assert groups[0]["pair_precision_mean"] == pytest.approx(0.6) and math.isnan(groups[1]["pair_precision_mean"])
    table = markdown_table(groups, ["method", "experiment"])
    isl, triplet = scores["isl"], scores["triplet"]
    # the best kNN mean among the 3-seed rows is bold; triplet's one seed is higher but is not compared
    assert f"| isl | digits | 3 | **{statistics.mean(isl):.3f} ± {statistics.stdev(isl):.3f}** |" in table
    assert f"| triplet | digits | 1 | {triplet[0]:.3f} |" in table  # one seed: no ±
    assert table.count("**") == 2 * 2  # kNN and NMI; pair precision is not a higher-is-better score here
    assert "| – |" in table and table.startswith("| method | experiment | n | kNN acc | linear probe | NMI |")
    path = write_csv(tmp_path / "t.csv", groups, ["method", "n", "seeds", "knn_acc_mean", "knn_acc_std"])
    read = read_rows(path)
    assert read[2] == {"method": "triplet", "n": "1", "seeds": "[0]", "knn_acc_mean": "0.97", "knn_acc_std": ""}
    assert format_mean_std(float("nan"), float("nan")) == "–"


def test_numeric_group_values_sort_as_numbers():
    rows = [{"isl.gan.alpha": a, "knn_acc": 0.1} for a in (10.0, 2.0, 0.5)]
    assert [g["isl.gan.alpha"] for g in aggregate(rows, ["isl.gan.alpha"])] == [0.5, 2.0, 10.0]


def test_round_table_against_a_loop():
    records, truth = [], {}
    global_epoch = 0
    for r in range(3):
        if r:
            for e in range(r + 2):
                records.append({"stage": "gan", "round": r, "epoch": e + 1, "d_loss": 1.0 - e / 10, "g_loss": 0.5 + e})
            for p in range(2):
                records.append({"stage": "mining", "round": r, "pass": p + 1, "new_pairs": 3 * r + p,
                                "pairs": 100 * r + p, "pair_precision": 0.9 - r / 10 - p / 100})
        for e in range(4):
            global_epoch += 1
            rec = {"stage": "encoder", "round": r, "epoch": e + 1, "global_epoch": global_epoch,
                   "pairs": 100 * r + 1 if r else 0, "pair_precision": 0.9 - r / 10 - 0.01 if r else None}
            if e in (1, 3):
                rec.update(knn_acc=0.5 + global_epoch / 100, nmi=0.3 + global_epoch / 100)
            records.append(rec)
    records.append({"stage": "final", "knn_acc": 1.0})
    for rec in records:  # the obvious per-record bookkeeping
        if rec["stage"] == "final":
            continue
        t = truth.setdefault(rec["round"], {"gan": 0, "new": 0})
        if rec["stage"] == "gan":
            t["gan"] += 1
            t["d"], t["g"] = rec["d_loss"], rec["g_loss"]
        if rec["stage"] == "mining":
            t["new"] += rec["new_pairs"]
        if rec["stage"] == "encoder":
            t["pairs"] = rec["pairs"]
            if "knn_acc" in rec:
                t["knn"] = rec["knn_acc"]
    table = round_table(records)
    assert [row["round"] for row in table] == [0, 1, 2]
    for row in table:
        t = truth[row["round"]]
        assert row["gan_epochs"] == t["gan"] and row["new_pairs"] == t["new"] and row["pairs"] == t["pairs"]
        assert row["knn_acc"] == t["knn"] and row.get("d_loss") == t.get("d") and row.get("g_loss") == t.get("g")


def test_round_scores_take_the_last_evaluation_of_each_round():
    from isl.experiments.collect import ROUND_METRICS, round_scores
    records, truth, g = [], {}, 0
    for r in range(3):
        if r:
            records.append({"stage": "gan", "round": r, "epoch": 1, "knn_acc": 0.0})  # not an encoder evaluation
            records.append({"stage": "mining", "round": r, "pass": 1, "pairs": 10 * r, "pair_precision": 0.5})
            if r == 2:  # the GAN diagnostics of round 2's GAN stage (round 1 has none: diagnostics off)
                records.append({"stage": "gan_diag", "round": r, "heldout_auc": 0.61, "fresh_d_auc": 0.99})
        for e in range(3):
            g += 1
            rec = {"stage": "encoder", "round": r, "epoch": e + 1, "global_epoch": g, "knn_acc": None}
            if e < 2 or r == 1:  # round 0 and 2 end on an epoch without an evaluation
                rec.update({m: g / 100 + i / 1000 for i, m in enumerate(ROUND_METRICS)}, val_nmi=g / 50)
                truth[r] = rec
            records.append(rec)
    records.append({"stage": "final", "knn_acc": 1.0, "round": 2})
    got = round_scores(records)
    assert [s["round"] for s in got] == [0, 1, 2]
    for s in got:  # the last evaluated encoder record of the round, whatever comes after it
        t = truth[s["round"]]
        assert s["global_epoch"] == t["global_epoch"] and s["val_nmi"] == t["val_nmi"] and s["val_acc"] is None
        assert all(s[m] == t[m] for m in ROUND_METRICS)
    assert [(s["d_auc"], s["fresh_d_auc"]) for s in got] == [(None, None), (None, None), (0.61, 0.99)]
    assert round_scores([{"stage": "encoder", "round": 0, "knn_acc": None}]) == []


def test_paired_differences_against_a_loop():
    """Each run minus the reference run of its seed, per group: mean, sample std, wins; unpaired seeds and the
    reference itself left out; matched per round when asked."""
    from scipy.stats import ttest_1samp

    from isl.experiments.collect import paired_differences, paired_table, parse_reference, paired_t_p
    rows = []
    for seed in range(3):
        rows.append({"variant": "knn", "seed": seed, "nmi": 0.5 + 0.05 * seed, "acc": 0.6})
        rows.append({"variant": "gan", "seed": seed, "nmi": 0.47 + 0.07 * seed, "acc": None if seed == 2 else 0.7})
    rows.append({"variant": "gan", "seed": 7, "nmi": 0.9})               # no knn run of seed 7: unpaired
    ref = parse_reference("variant=knn")
    (got,) = paired_differences(rows, ["variant"], ref, ["nmi", "acc"])
    deltas = [(0.47 + 0.07 * s) - (0.5 + 0.05 * s) for s in range(3)]
    assert got["variant"] == "gan" and got["n"] == 3 and got["seeds"] == [0, 1, 2]
    assert got["nmi_mean"] == pytest.approx(statistics.mean(deltas))
    assert got["nmi_std"] == pytest.approx(statistics.stdev(deltas))
    assert got["nmi_wins"] == sum(d > 0 for d in deltas) == 1 and got["nmi_pairs"] == 3
    assert got["acc_mean"] == pytest.approx(0.1) and got["acc_pairs"] == 2 and got["acc_wins"] == 2
    assert got["nmi_p"] == pytest.approx(ttest_1samp(deltas, 0.0).pvalue)  # the paired t-test, from scipy
    assert math.isnan(got["acc_p"])                                         # no spread: undefined
    table = paired_table([got], ["variant"], ["nmi", "acc"])
    p = ttest_1samp(deltas, 0.0).pvalue
    assert f"| gan | 0,1,2 | -0.010 ± 0.020 (1/3, p {p:.2f}) | +0.100 ± 0.000 (2/2) |" in table
    per_round = [{**r, "round": k, "nmi": r["nmi"] + k} for r in rows[:6] for k in (0, 1)]
    groups = paired_differences(per_round, ["variant", "round"], ref, ["nmi"], match=("round",))
    assert [(g["round"], g["n"]) for g in groups] == [(0, 3), (1, 3)]
    assert groups[1]["nmi_mean"] == pytest.approx(statistics.mean(deltas))
    for values in ([0.01, 0.03], [0.02, -0.01, 0.05, 0.04]):  # the p-value against scipy's, other sizes
        mean, std = statistics.mean(values), statistics.stdev(values)
        assert paired_t_p(mean, std, len(values)) == pytest.approx(ttest_1samp(values, 0.0).pvalue)
    assert math.isnan(paired_t_p(0.1, math.nan, 1))
    with pytest.raises(ValueError, match="matches no run"):
        paired_differences(rows, ["variant"], parse_reference("variant=npid"), ["nmi"])
    with pytest.raises(ValueError, match="several runs of seed 0"):
        paired_differences(rows + [{"variant": "knn", "seed": 0, "nmi": 0.1}], ["variant"], ref, ["nmi"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_reference("knn")
    assert parse_reference("method=isl, isl.gan.stop=auc") == {"method": "isl", "isl.gan.stop": "auc"}


def _holm_by_definition(p):
    """Holm from its definition: the k-th smallest p times (m - k + 1), made monotone, capped at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    m = len(p)
    return [max(min(1.0, (m - j) * p[order[j]]) for j in range(order.index(i) + 1)) for i in range(m)]


def _bh_by_definition(p):
    """Benjamini-Hochberg from its definition: min over k >= rank(i) of m p_(k) / k, capped at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    m = len(p)
    return [min(min(1.0, m * p[order[k]] / (k + 1)) for k in range(order.index(i), m)) for i in range(m)]


@pytest.mark.parametrize("p", [[0.01, 0.04, 0.03, 0.2], [0.5], [0.02, 0.02, 0.9, 0.001, 0.3], [0.6, 0.7, 0.8]])
def test_adjust_p_against_the_definitions(p):
    from isl.experiments.collect import adjust_p
    assert adjust_p(p, "holm") == pytest.approx(_holm_by_definition(p))
    assert adjust_p(p, "bh") == pytest.approx(_bh_by_definition(p))
    assert adjust_p(p, "none") == p
    assert all(a >= b for a, b in zip(adjust_p(p, "holm"), p))          # a correction never lowers a p-value


def test_adjust_p_leaves_undefined_p_values_out_of_the_count():
    from isl.experiments.collect import adjust_p
    got = adjust_p([0.01, math.nan, 0.04], "holm")
    assert math.isnan(got[1]) and got[0] == pytest.approx(0.02) and got[2] == pytest.approx(0.04)
    assert all(math.isnan(v) for v in adjust_p([math.nan, math.nan], "bh"))
    got = adjust_p([0.04, math.nan, 0.01, 0.03], "bh")                  # NaN kept in place, not counted
    assert math.isnan(got[1]) and [got[0], got[2], got[3]] == pytest.approx(_bh_by_definition([0.04, 0.01, 0.03]))
    assert adjust_p([], "holm") == [] and adjust_p([], "bh") == []
    with pytest.raises(ValueError, match="holm, bh"):
        adjust_p([0.1], "bonferroni")


def test_paired_p_adjust_corrects_within_each_round():
    """The family is the groups compared with the reference: per round when matched by round."""
    from isl.experiments.collect import adjust_p, paired_differences, paired_table, parse_reference
    rows = []
    for seed in range(3):
        for rnd in (1, 2):
            rows.append({"variant": "knn", "seed": seed, "round": rnd, "nmi": 0.5})
            for k, variant in enumerate(("a", "b", "c")):
                rows.append({"variant": variant, "seed": seed, "round": rnd,
                             "nmi": 0.5 + 0.01 * (k + rnd) + 0.003 * seed * (k + 1)})
    groups = paired_differences(rows, ["variant", "round"], parse_reference("variant=knn"), ["nmi"],
                                match=("round",), p_adjust="holm")
    for rnd in (1, 2):
        family = [g for g in groups if g["round"] == rnd]
        assert len(family) == 3
        assert [g["nmi_p_adj"] for g in family] == pytest.approx(adjust_p([g["nmi_p"] for g in family], "holm"))
    assert "Holm" in paired_table(groups, ["variant", "round"], ["nmi"], "holm")
    plain = paired_differences(rows, ["variant", "round"], parse_reference("variant=knn"), ["nmi"], match=("round",))
    assert "nmi_p_adj" not in plain[0] and "Holm" not in paired_table(plain, ["variant", "round"], ["nmi"])


def test_paired_p_family_table_corrects_every_p_value_together():
    """p_family="table": one family over all groups, metrics and rounds, each p-value corrected by the same pooled
    Holm / BH as a direct call on the flat list; "metric" keeps one family per metric and round."""
    from isl.experiments.collect import adjust_p, paired_differences, parse_reference
    rows = []
    for seed in range(3):
        for rnd in (1, 2):
            rows.append({"variant": "knn", "seed": seed, "round": rnd, "nmi": 0.5, "acc": 0.6})
            for k, variant in enumerate(("a", "b")):
                rows.append({"variant": variant, "seed": seed, "round": rnd,
                             "nmi": 0.5 + 0.01 * (k + rnd) + 0.003 * seed * (k + 1),
                             "acc": 0.6 - 0.02 * k + 0.005 * seed * (rnd + k) + (0.01 if seed == 1 else 0)})
    ref, metrics = parse_reference("variant=knn"), ["nmi", "acc"]
    for method in ("holm", "bh"):
        pooled = paired_differences(rows, ["variant", "round"], ref, metrics, match=("round",), p_adjust=method,
                                    p_family="table")
        flat = [(g, m) for g in pooled for m in metrics]
        assert len(flat) == 8
        expected = adjust_p([g[f"{m}_p"] for g, m in flat], method)
        assert [g[f"{m}_p_adj"] for g, m in flat] == pytest.approx(expected)
        per_metric = paired_differences(rows, ["variant", "round"], ref, metrics, match=("round",), p_adjust=method)
        for m in metrics:
            for rnd in (1, 2):
                family = [g for g in per_metric if g["round"] == rnd]
                assert [g[f"{m}_p_adj"] for g in family] == pytest.approx(adjust_p([g[f"{m}_p"] for g in family],
                                                                                    method))
    holm_table = paired_differences(rows, ["variant", "round"], ref, metrics, match=("round",), p_adjust="holm",
                                    p_family="table")
    holm_metric = paired_differences(rows, ["variant", "round"], ref, metrics, match=("round",), p_adjust="holm")
    assert all(t[f"{m}_p_adj"] >= s[f"{m}_p_adj"] for t, s in zip(holm_table, holm_metric) for m in metrics)
    with pytest.raises(ValueError, match="metric, table"):
        paired_differences(rows, ["variant"], ref, metrics, match=("round",), p_adjust="holm", p_family="round")
