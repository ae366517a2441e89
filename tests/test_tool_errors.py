"""Every tool (isl/tools/*.py), walked with bad input as a user would type it: each case ends as one line on
stderr ("error: ...") and exit code 2, no traceback, and a training tool whose start failed leaves no run
directory behind. The tools run in this process through `isl.cli.run_cli`, the console commands' wrapper."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from isl.builders import build_encoder_from_config
from isl.checkpoint import save_checkpoint
from isl.cli import run_cli
from isl.config import load_config, to_dict
from isl.tools import (ablate, baseline_table, evaluate, export, probe, report, train_baseline, train_isl)

ROOT = Path(__file__).resolve().parent.parent
FAST = ["train.epochs_first=1", "isl.rounds=0", "train.max_steps_per_epoch=1", "eval.knn_k=5",
        "eval.kmeans_restarts=1", "eval.linear_probe=false", "model.low_dim=8"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints and yaml files the cases point at."""
    d = tmp_path_factory.mktemp("bad_inputs")
    cfg = load_config("digits.yaml", FAST)
    good = {"config": to_dict(cfg), "model": build_encoder_from_config(cfg).state_dict()}
    save_checkpoint(d / "good.pt", good)
    save_checkpoint(d / "no_config.pt", {"model": good["model"]})
    other = load_config("digits.yaml", FAST[:-1] + ["model.low_dim=16"])
    save_checkpoint(d / "other_shape.pt", {"config": good["config"],
                                           "model": build_encoder_from_config(other).state_dict()})
    data = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    (d / "empty.yaml").write_text("# nothing\n")
    (d / "dup.yaml").write_text("seed: 1\nseed: 2\n")
    (d / "tabs.yaml").write_text("data:\n\tname: digits\n")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01")
    (d / "a_file").write_text("not a folder")
    return d


def T(path):  # noqa: N802 (a placeholder filled in with the fixture's folder)
    return f"{{files}}/{path}"


TRAIN = ["--no-tensorboard", "--quiet", "--set", *FAST]
CASES = [  # (id, tool, argv, fragment of the one line)
    ("eval_every_0", train_isl, [*TRAIN, "train.eval_every=0"], "train.eval_every=0"),
    ("gan_batch_0", train_isl, [*TRAIN, "isl.gan.batch_size=0"], "isl.gan.batch_size=0"),
    ("num_candidates_0", train_isl, [*TRAIN, "isl.gan.num_candidates=0"], "isl.gan.num_candidates=0"),
    ("topk_negative", train_isl, [*TRAIN, "isl.mining.topk=-3"], "isl.mining.topk=-3"),
    ("seed_negative", train_isl, [*TRAIN, "seed=-1"], "seed=-1"),
    ("momentum_negative", train_isl, [*TRAIN, "optim.momentum=-1"], "optim.momentum=-1"),
    ("warmup_negative", train_isl, [*TRAIN, "optim.warmup_epochs=-1"], "optim.warmup_epochs=-1"),
    ("lr_inf", train_isl, [*TRAIN, "optim.lr=.inf"], "optim.lr=inf"),
    ("lam_inf", train_isl, [*TRAIN, "isl.lam=.inf"], "isl.lam=inf"),
    ("alpha_inf", train_isl, [*TRAIN, "isl.gan.alpha=.inf"], "isl.gan.alpha=inf"),
    ("tau_nan", train_isl, [*TRAIN, "isl.temperature=.nan"], "isl.temperature=nan"),
    ("kmeans_restarts_0", train_isl, [*TRAIN, "eval.kmeans_restarts=0"], "eval.kmeans_restarts=0"),
    ("data_name", train_isl, [*TRAIN, "data.name=mnist"], "data.name='mnist'"),
    ("arch", train_isl, [*TRAIN, "model.arch=vgg"], "model.arch='vgg'"),
    ("augment", train_isl, [*TRAIN, "data.augment=heavy"], "data.augment='heavy'"),
    ("device_absent", train_isl, [*TRAIN, "train.device=cuda:99"], "train.device='cuda:99'"),
    ("device_typo", train_isl, [*TRAIN, "train.device=gpu"], "is not a device"),
    ("unknown_key", train_isl, [*TRAIN, "isl.gan.alpah=1"], "did you mean 'alpha'"),
    ("knn_k_above_bank", train_isl, [*TRAIN, "eval.knn_k=100000"], "larger than the kNN bank"),
    ("batch_above_data", train_isl, [*TRAIN, "train.batch_size=100000"], "larger than the training set"),
    ("missing_cfg", train_isl, ["--cfg", "nosuch.yaml"], "not found"),
    ("empty_yaml", train_isl, ["--cfg", T("empty.yaml")], "is empty"),
    ("duplicate_key_yaml", train_isl, ["--cfg", T("dup.yaml")], "appears twice"),
    ("tab_yaml", train_isl, ["--cfg", T("tabs.yaml")], "not tabs"),
    ("binary_yaml", train_isl, ["--cfg", T("binary.yaml")], "not a text file"),
    ("resume_nothing", train_isl, [*TRAIN, "--resume", "auto"], "found no checkpoint"),
    ("resume_missing", train_isl, [*TRAIN, "--resume", T("nowhere.pt")], "no checkpoint at"),
    ("resume_truncated", train_isl, [*TRAIN, "--resume", T("truncated.pt")], "could not load checkpoint"),
    ("output_root_is_a_file", train_isl, [*TRAIN, "--output-root", T("a_file")], "cannot create a run directory"),
    ("baseline_loss", train_baseline, [*TRAIN, "baseline.loss=nosuch"], "baseline.loss"),
    ("baseline_m_0", train_baseline, [*TRAIN, "baseline.m_per_class=0"], "baseline.m_per_class=0"),
    ("baseline_kwargs", train_baseline, [*TRAIN, "baseline.loss_kwargs={bogus: 1}"], "the loss takes"),
    ("baseline_data", train_baseline, ["--data", "nosuch"], "--data nosuch"),
    ("baseline_diverges", train_baseline, [*TRAIN, "optim.lr=1e30", "baseline.epochs=1"],
     "No checkpoint had been written yet"),
    ("evaluate_no_ckpt", evaluate, [], "give --ckpt"),
    ("evaluate_missing_ckpt", evaluate, ["--ckpt", T("nowhere.pt")], "does not exist"),
    ("evaluate_no_config", evaluate, ["--ckpt", T("no_config.pt")], "lacks 'config'"),
    ("evaluate_truncated", evaluate, ["--ckpt", T("truncated.pt")], "truncated"),
    ("evaluate_other_model", evaluate, ["--ckpt", T("other_shape.pt")], "in the checkpoint, this run has"),
    ("evaluate_device", evaluate, ["--ckpt", T("good.pt"), "--device", "cuda:99"], "device='cuda:99'"),
    ("probe_no_losses", probe, ["--ckpt", T("good.pt"), "--losses", ","], "names no loss"),
    ("probe_zero_batches", probe, ["--ckpt", T("good.pt"), "--batches", "0"], "--batches 0"),
    ("probe_unknown_loss", probe, ["--ckpt", T("good.pt"), "--losses", "tripplet"], "tripplet"),
    ("probe_split", probe, ["--ckpt", T("good.pt"), "--split", "val"], "--split val"),
    ("export_no_config", export, ["--ckpt", T("no_config.pt"), "--out", T("x.pt")], "lacks 'config'"),
    ("report_missing_path", report, [T("nowhere")], "no such file or folder"),
    ("report_nothing", report, [], "give run directories"),
    ("ablate_bad_arch", ablate, ["--cfg", "digits.yaml", "--grid", "model.arch=convnet,resnet34", "--dry-run"],
     "model.arch='resnet34'"),
    ("ablate_bad_data", ablate, ["--cfg", "digits.yaml", "--grid", "data.name=digits,imagenet", "--dry-run"],
     "data.name='imagenet'"),
    ("ablate_no_grid", ablate, ["--cfg", "digits.yaml", "--dry-run"], "has no grid"),
    ("ablate_baseline_loss", ablate, ["--cfg", "baselines/triplet.yaml", "--tool", "train_baseline", "--grid",
                                      "baseline.loss=triplet,tripletx", "--dry-run"], "tripletx"),
    ("baseline_table_loss", baseline_table, ["--losses", "nosuch"], "nosuch"),
]


@pytest.mark.parametrize("tool, argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(tool, argv, fragment, files, tmp_path, capsys):
    argv = [a.replace("{files}", str(files)) for a in argv]
    if tool in (train_isl, train_baseline) and "--output-root" not in argv:
        argv += ["--output-root", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tool.main, argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    runs = tmp_path / "runs"
    assert not runs.exists() or not list(runs.rglob("config.yaml")), "a failed start left a run directory"


def test_console_script_prints_one_line_for_a_run_time_error(tmp_path):
    """The real entry point (a subprocess): an error found after the data is built is still one line, exit 2."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train_isl.py"), *TRAIN, "eval.knn_k=100000",
                           "--output-root", str(tmp_path / "runs")], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: eval.knn_k=100000") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").rglob("config.yaml"))
