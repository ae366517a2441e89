"""End to end on digits: a tiny ISL run, exact resume, bad input, non-finite loss handling."""
import json

import pytest
import torch

from isl.checkpoint import CheckpointError, load_checkpoint
from isl.config import load_config
from isl.rundir import RunDir, read_metrics
from isl.training import NonFiniteLossError
from isl.train import CHECKPOINT_FORMAT, StopRun, run_isl

TINY = ["train.epochs_first=2", "train.epochs_per_round=1", "isl.rounds=1", "train.batch_size=64",
        "train.max_steps_per_epoch=3", "train.eval_every=1", "isl.gan.max_epochs=2", "isl.gan.min_epochs=1",
        "isl.gan.batch_size=256", "isl.gan.num_candidates=64", "isl.gan.min_d_gap=-1.0",
        "isl.mining.max_passes=2", "isl.mining.quota=0.2", "isl.mining.radius=1.0", "eval.kmeans_restarts=1",
        "eval.knn_k=5", "model.low_dim=16"]


def tiny_cfg(tmp_path, *extra):
    return load_config("digits.yaml", TINY + list(extra), output_root=str(tmp_path / "runs"))


def test_tiny_isl_run_end_to_end(tmp_path):
    cfg = tiny_cfg(tmp_path)
    run = RunDir.create(cfg, enable_tensorboard=True)
    results = run_isl(cfg, run)
    run.close()
    for key in ("knn_acc", "nmi", "acc", "ari"):
        assert 0.0 <= results[key] <= 1.0
    assert results["method"] == "isl" and results["epochs"] == 3
    stages = [r["stage"] for r in read_metrics(run.path)]
    assert stages[:2] == ["encoder", "encoder"] and "gan" in stages and "mining" in stages
    assert stages[-2:] == ["encoder", "final"]
    saved = json.loads((run.path / "results.json").read_text())
    assert saved["knn_acc"] == results["knn_acc"]
    assert saved["knn_backend"] in ("faiss", "torch") and saved["kmeans_backend"] in ("faiss", "sklearn")
    assert (run.path / "config.yaml").is_file() and list(run.path.glob("events.out.tfevents.*"))
    state = load_checkpoint(run.checkpoint_path)  # weights_only=True
    assert state["progress"]["stage"] == "done"
    diag = [r for r in read_metrics(run.path) if r["stage"] == "gan_diag"]
    assert len(diag) == 1 and results["d_auc"] == diag[0]["heldout_auc"]
    assert 0.0 <= results["d_auc"] <= 1.0 and 0.0 <= results["fresh_d_auc"] <= 1.0


def test_auc_stop_ends_the_gan_stage_at_its_best_heldout_auc(tmp_path):
    cfg = tiny_cfg(tmp_path, "isl.gan.stop=auc", "isl.gan.max_epochs=4", "isl.gan.min_epochs=1",
                   "isl.gan.patience=1", "isl.gan.min_delta=0")
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, run, stop_after=6)  # 2 encoder epochs, then at least 2 GAN epochs and the mining passes
    gan = [r for r in read_metrics(run.path) if r["stage"] == "gan"]
    best = max(range(len(gan)), key=lambda k: (gan[k]["heldout_auc"], -k))
    assert len(gan) == best + 2 or len(gan) == 4  # patience 1: one epoch past the best, or the budget
    state = load_checkpoint(run.checkpoint_path)
    assert state["gan_best"]["epoch"] == best + 1


def test_auc_stop_ignores_the_warm_up_epochs_before_min_epochs(tmp_path, monkeypatch):
    # D's AUC is highest against the untrained G of the first epochs; stop=auc must neither count nor keep them.
    # Scripted held-out AUCs of GAN epochs 1-5: epochs 1-2 are warm-up, so the best is epoch 4 (0.8), not epoch 1.
    import isl.train
    aucs, real = iter([1.0, 0.9, 0.5, 0.8, 0.7]), isl.train.gan_heldout

    def scripted(*args, **kwargs):
        out = real(*args, **kwargs)
        return {**out, "heldout_auc": next(aucs, out["heldout_auc"])}

    monkeypatch.setattr(isl.train, "gan_heldout", scripted)
    cfg = tiny_cfg(tmp_path, "isl.gan.stop=auc", "isl.gan.max_epochs=5", "isl.gan.min_epochs=3",
                   "isl.gan.patience=2", "isl.gan.min_delta=0")
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, run, stop_after=7)  # 2 encoder epochs, then the 5 GAN epochs
    gan = [r for r in read_metrics(run.path) if r["stage"] == "gan"]
    assert [r["heldout_auc"] for r in gan] == [1.0, 0.9, 0.5, 0.8, 0.7]  # patience 2 is not used up by epoch 5
    state = load_checkpoint(run.checkpoint_path)
    assert state["gan_best"]["epoch"] == 4 and state["gan_stopper"]["best"] == 0.8


@pytest.mark.parametrize("strategy", ["none", "knn", "knn_ranked"])
def test_other_strategies_run(tmp_path, strategy):
    cfg = tiny_cfg(tmp_path, f"isl.mining.strategy={strategy}")
    run = RunDir.create(cfg, enable_tensorboard=False)
    results = run_isl(cfg, run)
    assert results["method"] == {"none": "npid", "knn": "knn_mining", "knn_ranked": "knn_ranked"}[strategy]
    assert results["d_auc"] is None and results["fresh_d_auc"] is None  # no GAN, no GAN diagnostics
    if strategy == "none":  # NPID exactly: no mined pairs and no L2 term
        assert results["pairs"] == 0
        assert all(r["l2"] == 0.0 for r in read_metrics(run.path) if r["stage"] == "encoder")
    stages = {r["stage"] for r in read_metrics(run.path)}
    assert "gan" not in stages
    mining = [r for r in read_metrics(run.path) if r["stage"] == "mining"]
    assert all(0 <= r["pair_coverage_min_class"] <= r["pair_coverage"] <= 1 for r in mining)
    if strategy == "none":
        assert results["pair_coverage"] == 0.0
        return
    assert 0 < results["pair_coverage"] <= 1 and results["pair_coverage"] == mining[-1]["pair_coverage"]
    # tools/evaluate.py describes the checkpoint's positive sets with the same numbers (same train-set order)
    from isl.tools import evaluate
    described = evaluate.main(["--ckpt", str(run.checkpoint_path), "--out", str(tmp_path / "eval.json")])
    for key in ("pair_precision", "pair_coverage", "pair_coverage_min_class"):
        assert described[key] == pytest.approx(results[key])


def _weights(path):
    state = load_checkpoint(path)
    return state["model"], state["bank"], state["positives"], state["G"], state["D"]


@pytest.mark.parametrize("stop_after", [1, 4])  # after the first encoder epoch; inside the GAN stage
def test_resume_is_bit_identical(tmp_path, stop_after):
    cfg = tiny_cfg(tmp_path)
    full = RunDir(tmp_path / "full", enable_tensorboard=False)
    run_isl(cfg, full)
    part = RunDir(tmp_path / "part", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, part, stop_after=stop_after)
    run_isl(cfg, part, resume=part.checkpoint_path)
    for a, b in zip(_weights(full.checkpoint_path), _weights(part.checkpoint_path)):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_resume_with_a_different_config_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path)
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, run, stop_after=1)
    other = tiny_cfg(tmp_path, "isl.lam=0.9")
    with pytest.raises(CheckpointError, match="isl.lam"):
        run_isl(other, run, resume=run.checkpoint_path)


def test_batch_larger_than_data_set(tmp_path):
    cfg = tiny_cfg(tmp_path, "train.batch_size=5000")
    with pytest.raises(ValueError, match="larger than the training set"):
        run_isl(cfg, RunDir(tmp_path / "r", enable_tensorboard=False))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path)
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, run, stop_after=1)
    good = load_checkpoint(run.checkpoint_path)

    from isl.objective import ISLLoss
    original = ISLLoss.forward

    def poisoned(self, *args, **kwargs):
        terms = original(self, *args, **kwargs)
        return {**terms, "l1": terms["l1"] * float("nan"), "loss": terms["loss"] * float("nan")}

    monkeypatch.setattr(ISLLoss, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss.*The last good checkpoint is kept: .*last\.pt"):
        run_isl(cfg, run, resume=run.checkpoint_path)
    kept = load_checkpoint(run.checkpoint_path)
    assert kept["progress"] == good["progress"]
    for key in good["model"]:
        assert torch.equal(kept["model"][key], good["model"][key])


def test_divergence_before_the_first_checkpoint_says_none_was_written(tmp_path):
    cfg = tiny_cfg(tmp_path, "optim.lr=1e30")
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    with pytest.raises(NonFiniteLossError, match="No checkpoint had been written yet") as err:
        run_isl(cfg, run)
    assert "is kept" not in str(err.value) and not run.checkpoint_path.exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("extra, views", [([], 2), (["isl.mining.strategy=none"], 1), (["isl.lam=0"], 1),
                                          (["isl.singleton_hard=skip"], 1)])
def test_encoder_step_views(tmp_path, extra, views):
    """The second view is encoded only when L2 uses it, and never with autograd."""
    from isl.stages import train_encoder_epoch
    from isl.train import ISLRun

    cfg = tiny_cfg(tmp_path, *extra)
    s = ISLRun(cfg, torch.device("cpu"))
    calls = []
    s.model.register_forward_hook(lambda m, inp, out: calls.append((inp[0].shape[0], out.requires_grad)))
    train_encoder_epoch(s.model, s.optimizer, s.train_loader(0), s.bank, s.positives, s.objective, cfg,
                        torch.device("cpu"), batch_views=s.batch_views)
    steps = cfg.train.max_steps_per_epoch
    assert len(calls) == steps * views
    assert all(b == cfg.train.batch_size for b, _ in calls)
    assert [grad for _, grad in calls] == [True, False] * steps if views == 2 else [True] * steps


def test_old_checkpoint_layout_is_refused(tmp_path):
    """A checkpoint without the format key (the layout before per-stage counters) is a clear error."""
    cfg = tiny_cfg(tmp_path)
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, run, stop_after=1)
    state = load_checkpoint(run.checkpoint_path)
    assert state["format"] == CHECKPOINT_FORMAT
    del state["format"]
    torch.save(state, run.checkpoint_path)
    with pytest.raises(CheckpointError, match=f"format 1, this code reads {CHECKPOINT_FORMAT}.*start a new run"):
        run_isl(cfg, run, resume=run.checkpoint_path)


def test_gan_early_stopping_state_is_checkpointed(tmp_path):
    cfg = tiny_cfg(tmp_path)
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, run, stop_after=3)  # two encoder epochs, one GAN epoch
    state = load_checkpoint(run.checkpoint_path)
    assert state["progress"]["stage"] == "gan" and state["progress"]["gan_epochs"] == 1
    assert state["gan_stopper"]["best"] is not None and state["gan_stopper"]["bad_steps"] == 0


def test_a_new_strategy_runs_with_only_a_table_row(tmp_path, monkeypatch):
    """A strategy registered in isl.strategies.STRATEGIES is accepted by the config and runs end to end."""
    from isl.mining import MiningResult
    from isl.strategies import STRATEGIES, Strategy

    def mine_next_index(bank, positives, G, D, cfg, generator, views=None):  # pairs (i, i + 1): a toy miner
        i = torch.arange(len(bank) - 1, device=bank.device)
        anchors = torch.arange(len(bank), device=bank.device)
        return MiningResult(pairs_i=i, pairs_j=i + 1, anchors=anchors, accepted=torch.ones_like(anchors, dtype=bool),
                            scores=None, cos_threshold=torch.full((len(bank),), float("nan")),
                            num_accepted_anchors=len(i), num_capped=0)

    monkeypatch.setitem(STRATEGIES, "next_index", Strategy(stages=("mining",), method="next_index",
                                                           uses_l2=True, miner=mine_next_index))
    cfg = tiny_cfg(tmp_path, "isl.mining.strategy=next_index")
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    results = run_isl(cfg, run)
    assert results["method"] == "next_index" and results["pairs"] > 0 and results["pair_precision"] >= 0
    stages = [r["stage"] for r in read_metrics(run.path)]
    assert "mining" in stages and "gan" not in stages and stages[-2:] == ["encoder", "final"]


def test_a_diverging_gan_stops_before_its_checkpoint(tmp_path, monkeypatch):
    """NaN in G or D (here: D's weights poisoned by its optimizer step) stops the GAN stage with one clear error;
    the checkpoint on disk is the last good one (the encoder stage's), never a state with NaN."""
    cfg = tiny_cfg(tmp_path)
    run = RunDir(tmp_path / "r", enable_tensorboard=False)
    with pytest.raises(StopRun):
        run_isl(cfg, run, stop_after=2)  # the two encoder epochs of round 0
    good = load_checkpoint(run.checkpoint_path)
    original = torch.optim.Adam.step

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        with torch.no_grad():
            for group in self.param_groups:
                for param in group["params"]:
                    param.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    with pytest.raises(NonFiniteLossError, match="GAN diverged.*isl.gan.lr"):
        run_isl(cfg, run, resume=run.checkpoint_path)
    kept = load_checkpoint(run.checkpoint_path)
    assert kept["progress"] == good["progress"]
    assert all(bool(torch.isfinite(t).all()) for t in kept["D"].values())
