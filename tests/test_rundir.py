"""Run directories: exclusive creation (concurrent starts never share a folder), stale temp files removed,
metrics.jsonl rewound to the checkpoint's record count on resume, one results.csv row per run, a failed start
leaves nothing, an unwritable output root is one line; end to end on a tiny ISL run killed between logging a
record and writing its checkpoint."""
from __future__ import annotations

import json
import threading

import pytest

from isl.config import load_config
from isl.rundir import RunDir, RunDirError, read_metrics
from isl.train import StopRun, run_isl

from csv_helpers import read_rows


@pytest.fixture
def cfg(tmp_path):
    return load_config("digits.yaml", output_root=str(tmp_path / "runs"))


def test_concurrent_starts_get_distinct_folders(cfg):
    barrier, made = threading.Barrier(8), []

    def start():
        barrier.wait()
        made.append(RunDir.create(cfg, timestamp="20260101-000000", enable_tensorboard=False).path)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8
    assert sorted(p.name for p in made) == ["20260101-000000"] + [f"20260101-000000-{k}" for k in range(1, 8)]


def test_unwritable_output_root_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    cfg = load_config("digits.yaml", output_root=str(tmp_path / "file"))
    with pytest.raises(RunDirError, match="cannot create a run directory under .*file/digits_isl") as err:
        RunDir.create(cfg)
    assert "\n" not in str(err.value)


def test_failed_start_removes_the_folder_a_started_run_keeps_it(cfg):
    run = RunDir.create(cfg, enable_tensorboard=False)
    assert run.discard_if_unstarted() and not run.path.exists() and not run.path.parent.exists()
    run = RunDir.create(cfg, enable_tensorboard=False)
    run.save_checkpoint({"x": 1})
    assert not run.discard_if_unstarted() and run.checkpoint_path.is_file()


def test_stale_temp_files_are_removed_when_a_run_is_opened(cfg):
    run = RunDir.create(cfg, enable_tensorboard=False)
    (run.path / "checkpoints" / "last.pt.tmp").write_bytes(b"half a checkpoint")
    RunDir(run.path, enable_tensorboard=False)
    assert not list((run.path / "checkpoints").glob("*.tmp"))


def test_metrics_rewound_to_the_checkpoint(cfg):
    run = RunDir.create(cfg, enable_tensorboard=False)
    for epoch in range(3):
        run.log_metrics({"epoch": epoch})
    run.save_checkpoint({})
    run.log_metrics({"epoch": 3})  # logged, then killed before its checkpoint
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 4, "lo')  # and a line cut by the kill
    again = RunDir(run.path, enable_tensorboard=False)
    again.rewind_metrics({"metrics_records": 3})
    assert [r["epoch"] for r in read_metrics(run.path)] == [0, 1, 2] and again.records == 3
    again.log_metrics({"epoch": 3})
    assert [r["epoch"] for r in read_metrics(run.path)] == [0, 1, 2, 3]


def test_results_csv_has_one_row_per_run_in_the_table_columns(cfg):
    a, b = (RunDir.create(cfg, timestamp=t, enable_tensorboard=False) for t in ("a", "b"))
    a.write_results({"knn_acc": 0.5, "nmi": 0.4})
    a.write_results({"knn_acc": 0.6, "nmi": 0.4})  # a resumed finished run: replaces its row
    b.write_results({"nmi": 0.3, "extra": 1, "knn_acc": 0.7})
    rows = read_rows(a.path.parent / "results.csv")
    assert [(r["run_dir"][-1], r["knn_acc"], r["nmi"]) for r in rows] == [("a", "0.6", "0.4"), ("b", "0.7", "0.3")]


def test_isl_resume_after_a_kill_between_record_and_checkpoint_repeats_no_record(tmp_path):
    tiny = ["train.epochs_first=2", "train.epochs_per_round=1", "isl.rounds=1", "train.batch_size=64",
            "train.max_steps_per_epoch=2", "train.eval_every=2", "isl.gan.max_epochs=2", "isl.gan.min_epochs=1",
            "isl.gan.batch_size=256", "isl.gan.num_candidates=64", "isl.gan.min_d_gap=-1.0",
            "isl.mining.max_passes=2", "isl.mining.quota=0.2", "isl.mining.radius=1.0", "eval.kmeans_restarts=1",
            "eval.knn_k=5", "model.low_dim=8", "eval.linear_probe=false"]
    cfg = load_config("digits.yaml", tiny, output_root=str(tmp_path / "runs"))

    def steps(run):
        return [(r["stage"], r.get("round"), r.get("epoch", r.get("pass"))) for r in read_metrics(run.path)
                if r["stage"] != "resume"]

    full = RunDir.create(cfg, timestamp="full", enable_tensorboard=False)
    run_isl(cfg, full)
    part = RunDir.create(cfg, timestamp="part", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, part, stop_after=3)  # inside the GAN stage
    with open(part.path / "metrics.jsonl", "a") as fh:  # the next record was logged, its checkpoint never written
        fh.write(json.dumps({"stage": "gan", "round": 1, "epoch": 2}) + "\n")
    run_isl(cfg, RunDir(part.path, enable_tensorboard=False), resume=part.checkpoint_path)
    assert steps(part) == steps(full) and len(set(steps(part))) == len(steps(part))
    run_isl(cfg, RunDir(part.path, enable_tensorboard=False), resume=part.checkpoint_path)  # a finished run
    assert steps(part) == steps(full)
    resumes = [r for r in read_metrics(part.path) if r["stage"] == "resume"]  # both resumes are on record
    assert [(r["at_round"], r["at_stage"]) for r in resumes] == [(1, "gan"), (1, "done")]
    assert resumes[0]["checkpoint"] == str(part.checkpoint_path) and resumes[1]["at_elapsed_s"] > 0
    assert json.loads((part.path / "results.json").read_text())["resumes"] == 2
    assert json.loads((full.path / "results.json").read_text())["resumes"] == 0
    rows = read_rows(part.path.parent / "results.csv")
    assert sorted(r["run_dir"] for r in rows) == sorted([str(full.path), str(part.path)])
