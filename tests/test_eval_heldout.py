"""Held-out selection scores (eval.val_fraction): the shared protocol run inside the train split alone, so a
schedule or a hyper-parameter can be chosen without the test labels."""
import importlib
import json

import pytest
import torch

from isl.config import ConfigError, load_config, to_dict
from isl.eval import evaluate_embeddings
from isl.eval.linear import stratified_split
from isl.experiments.grouping import config_keys
from isl.rundir import RunDir, read_metrics
from isl.train import run_isl
from isl.training import VAL_METRICS, check_same_config, evaluate_features, held_out_summary
from csv_helpers import read_rows
from test_train_isl import tiny_cfg


def cfg(*extra):
    return load_config("digits.yaml", ["eval.knn_k=5", "eval.kmeans_restarts=2", *extra])


def blobs(n_per_class, classes=3, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 3
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + torch.randn(len(y), d, generator=g), y


def test_off_by_default_and_test_scores_unchanged():
    bank_f, bank_y = blobs(30)
    query_f, query_y = blobs(10, seed=1)
    plain = evaluate_features(bank_f, bank_y, query_f, query_y, cfg())
    assert not any(k in plain for k in VAL_METRICS) and held_out_summary(plain) == ""
    with_val = evaluate_features(bank_f, bank_y, query_f, query_y, cfg("eval.val_fraction=0.2"))
    for key in ("knn_acc", "nmi", "acc", "ari", "linear_acc"):
        assert with_val[key] == plain[key]  # the test protocol does not change
    assert set(VAL_METRICS) <= with_val.keys() and with_val["val_size"] == 18  # 20 % of 30, per class
    assert held_out_summary(with_val).startswith(" | held-out train: knn ")


def test_held_out_scores_are_the_protocol_on_a_fixed_part_of_the_train_split():
    bank_f, bank_y = blobs(40)
    bank_y[::7] = -1  # unlabelled rows (STL-10's extra split) take part in nothing
    query_f, query_y = torch.randn(5, 8), torch.zeros(5, dtype=torch.long)  # the test split is never read
    c = cfg("eval.val_fraction=0.25", "eval.val_seed=3")
    res = evaluate_features(bank_f, bank_y, query_f, query_y, c)
    labelled = torch.nonzero(bank_y >= 0).squeeze(1)
    fit, val = stratified_split(bank_y[labelled], 0.25, 3)
    fit, val = labelled[fit], labelled[val]
    assert not set(fit.tolist()) & set(val.tolist()) and (bank_y[val] >= 0).all()
    direct = evaluate_embeddings(bank_f[fit], bank_y[fit], bank_f[val], bank_y[val], k=5, temperature=0.1,
                                 kmeans_restarts=2, seed=0, backend=c.eval.backend, cluster_on="all")
    for key in ("knn_acc", "nmi", "acc", "ari", "linear_acc"):
        assert res[f"val_{key}"] == pytest.approx(direct[key])
    other_query = evaluate_features(bank_f, bank_y, query_f + 1, 1 - query_y.clamp(max=0), c)
    assert all(other_query[k] == res[k] for k in VAL_METRICS)  # test features and labels do not enter


def test_same_part_for_every_training_seed():
    bank_f, bank_y = blobs(20)
    query_f, query_y = blobs(5, seed=2)
    a = evaluate_features(bank_f, bank_y, query_f, query_y, cfg("eval.val_fraction=0.3", "seed=0"))
    b = evaluate_features(bank_f, bank_y, query_f, query_y, cfg("eval.val_fraction=0.3", "seed=5"))
    assert a["val_size"] == b["val_size"] and a["val_knn_acc"] == b["val_knn_acc"]  # kNN has no randomness


def test_bad_fraction_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"eval.val_fraction"):
        cfg("eval.val_fraction=1.0")
    bank_f, bank_y = blobs(3)
    with pytest.raises(ValueError, match="holds out no image"):
        evaluate_features(bank_f, bank_y, *blobs(2, seed=1), cfg("eval.val_fraction=0.1"))


def test_report_adds_a_held_out_table_only_when_runs_have_the_scores(tmp_path):
    report = importlib.import_module("isl.tools.report")
    for seed, (nmi, val_nmi) in enumerate([(0.5, 0.6), (0.7, 0.8)]):
        run = tmp_path / "runs" / f"r{seed}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"method": "isl", "experiment": "e", "seed": seed, "nmi": nmi,
                                                      "val_nmi": val_nmi, "val_acc": None}))
    res = report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Held-out scores" in md and "held-out NMI" in md and "0.700 ± 0.141" in md
    row = read_rows(tmp_path / "rep" / "report.csv")[0]
    assert float(row["val_nmi_mean"]) == pytest.approx(0.7) and "val_acc_mean" not in row
    assert res["rows"] == 2
    run = tmp_path / "runs" / "r2"  # a third seed without held-out scores: not counted in the held-out table
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"method": "isl", "experiment": "e", "seed": 2, "nmi": 0.6}))
    report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep3")])
    held_out = (tmp_path / "rep3" / "report.md").read_text().split("Held-out scores")[1]
    assert "| isl | e | 2 | 0.700 ± 0.141 |" in held_out
    for seed in (0, 1, 2):
        (tmp_path / "runs" / f"r{seed}" / "results.json").write_text(
            json.dumps({"method": "isl", "experiment": "e", "seed": seed, "nmi": 0.5}))
    report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep2")])
    assert "Held-out" not in (tmp_path / "rep2" / "report.md").read_text()


def test_training_is_the_same_with_and_without_held_out_scores(tmp_path):
    results = []
    for name, extra in (("plain", []), ("val", ["eval.val_fraction=0.2"])):
        run = RunDir(tmp_path / name, enable_tensorboard=False)
        results.append(run_isl(tiny_cfg(tmp_path / name, *extra), run))
        run.close()
    plain, val = results
    for key in ("knn_acc", "nmi", "acc", "ari", "linear_acc", "pairs", "pair_precision"):
        assert val[key] == plain[key]  # the held-out evaluation draws nothing from the training's random streams
    assert 0.0 <= val["val_nmi"] <= 1.0 and "val_nmi" not in plain
    evals = [r for r in read_metrics(tmp_path / "val") if r.get("stage") == "encoder" and "knn_acc" in r]
    assert evals and all("val_knn_acc" in r for r in evals)


def test_held_out_keys_neither_split_groups_nor_block_a_resume(tmp_path):
    rows = [{"method": "isl", "eval.val_fraction": 0.0, "eval.knn_k": 5},
            {"method": "isl", "eval.val_fraction": 0.1, "eval.val_seed": 1, "eval.knn_k": 5}]
    assert "eval.val_fraction" not in config_keys(rows) and "eval.knn_k" in config_keys(rows)
    check_same_config(to_dict(cfg()), cfg("eval.val_fraction=0.1", "eval.val_seed=2"))  # no error
