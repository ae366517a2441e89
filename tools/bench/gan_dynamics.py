"""How the proxy GAN learns on a finished run's frozen features: D's held-out AUC epoch by epoch, per setting.

    python tools/bench/gan_dynamics.py --run runs/digits_isl/<stamp> \
        --setting base: --setting ttur:isl.gan.lr=1.0e-4,isl.gan.d_lr=1.0e-3 --epochs 30

For each --setting NAME:KEY=V,KEY=V (dotted overrides on top of the run's own config.yaml), a NEW G and D are
trained on the run's final encoder and bank (the positive sets start empty, as in round 1) for --epochs epochs,
exactly as the GAN stage does (`isl.stages.train_gan_epoch`, the round's view features when the config asks for
them). Printed per setting: the co-trained D's held-out AUC (real vs both fakes, and real vs (a, g, n)) every
--every epochs, then the AUC of a D trained afresh on the final frozen G (`isl.gan.diag_steps` steps), and one
mining pass with the final G and D: accepted anchors, candidate pairs, mean cos(g*, a / p / n). No labels are read:
settings can be chosen on these numbers without touching the evaluation. --json writes everything to a file.

--labels adds, at the same epochs, an analysis that reads the training labels (to understand the rule, never to
choose a setting): each anchor's best proxy g* (the miner's own pass with no threshold and no radius) is paired
with its nearest bank row outside P_i, and the knn miner's anchor with its own nearest row. Printed: the label
precision of those pairs, and how well each score ranks them by correctness (ROC AUC over pairs: D's score of
g*, cos(g*, v_j), and for knn cos(v_i, v_j)). A D whose score says which proxies are good positives has a
score AUC well above 0.5.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from isl.checkpoint import load_checkpoint  # noqa: E402
from isl.config import load_config  # noqa: E402
from isl.stages import gan_heldout, train_gan_epoch  # noqa: E402
from isl.gan import roc_auc  # noqa: E402
from isl.strategies import mine_with_gan, mine_with_knn  # noqa: E402
from isl.train import ISLRun, epoch_views, gan_diagnostics  # noqa: E402

# the miner's own pass, with every anchor accepted and every bank row in reach: its nearest row outside P_i
NO_GATE = ["isl.mining.threshold_mode=absolute", "isl.mining.threshold=1.0e-30", "isl.mining.radius=2.0",
           "isl.mining.radius_mode=fixed", "isl.mining.topk=1"]


def parse_setting(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    if not name:
        raise SystemExit(f"--setting {text!r} must look like NAME:KEY=V,KEY=V (or NAME: for the run's own config)")
    return name, [o for o in overrides.split(",") if o.strip()]


def label_ranking(s: ISLRun, probe_cfg, views) -> dict:
    """Label precision of each anchor's nearest-row pair (via g* and via v_i) and the AUC of each ranking score."""
    y = s.labels
    out = {}
    for name, miner in (("gan", mine_with_gan), ("knn", mine_with_knn)):
        res = miner(s.bank.bank, s.positives, s.G, s.D, probe_cfg, s.derived_generator(7), views=views)
        correct = (y[res.pairs_i] == y[res.pairs_j]).cpu()                                # E bool
        rank_auc = lambda score: roc_auc(score.cpu()[correct], score.cpu()[~correct])
        out[f"{name}_precision"] = float(correct.double().mean())
        out[f"{name}_auc_sim"] = rank_auc(res.pair_sims)
        if name == "gan":
            out["gan_auc_d_score"] = rank_auc(res.pair_scores)
    return out


def run_setting(run_dir: Path, overrides: list[str], epochs: int, every: int, device: str,
                labels: bool = False) -> dict:
    cfg = load_config(str(run_dir / "config.yaml"), overrides + ["isl.mining.strategy=gan"])
    probe_cfg = load_config(str(run_dir / "config.yaml"), overrides + ["isl.mining.strategy=gan"] + NO_GATE)
    s = ISLRun(cfg, torch.device(device))
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location=device)
    s.model.load_state_dict(state["model"])
    s.bank.load_state_dict(state["bank"])
    s.progress.round = 1
    views = s.views_of_round()
    start, curve = time.perf_counter(), []
    for epoch in range(epochs):
        v = epoch_views(views, epoch)
        train_gan_epoch(s.G, s.D, s.opt_g, s.opt_d, s.bank, s.positives, s.gan_train_anchors, cfg, s.rng, views=v)
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            q = gan_heldout(s.G, s.D, s.bank, s.positives, s.gan_heldout_anchors, cfg, s.rng, views=v)
            curve.append({"epoch": epoch + 1, "auc": q["heldout_auc"], "auc_pos": q["heldout_auc_pos"],
                          "d_real": q["heldout_d_real"], "d_fake_pos": q["heldout_d_fake_pos"],
                          **(label_ranking(s, probe_cfg, v) if labels else {})})
    diag = gan_diagnostics(s, views)
    res = s.strategy.miner(s.bank.bank, s.positives, s.G, s.D, cfg, s.rng, views=epoch_views(views, 0))
    return {"curve": curve, "fresh_d_auc": diag.get("fresh_d_auc"), "accepted_anchors": res.num_accepted_anchors,
            "candidate_pairs": int(res.pairs_i.numel()), **(res.diagnostics or {}),
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished ISL run directory (config.yaml + checkpoints/last.pt)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME:KEY=V,...",
                   help="a GAN setting to train (repeatable; default: the run's own config)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--every", type=int, default=5, help="print D's held-out AUC every this many epochs")
    p.add_argument("--labels", action="store_true",
                   help="also rank each anchor's nearest-row pair by D's score and by similarity against the training "
                        "labels (analysis only, see above)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run)
    if not (run_dir / "checkpoints" / "last.pt").is_file() or not (run_dir / "config.yaml").is_file():
        raise SystemExit(f"{run_dir} is not a finished run directory (needs config.yaml and checkpoints/last.pt)")
    out = {}
    for name, overrides in map(parse_setting, args.setting or ["run:"]):
        r = out[name] = run_setting(run_dir, overrides, args.epochs, args.every, args.device, args.labels)
        aucs = " ".join(f"{c['epoch']}:{c['auc']:.2f}/{c['auc_pos']:.2f}" for c in r["curve"])
        for c in r["curve"] if args.labels else []:
            print(f"{name:12s} epoch {c['epoch']:3d}: D AUC {c['auc']:.3f} | pairs via g*: precision "
                  f"{c['gan_precision']:.3f}, AUC of D's score {c['gan_auc_d_score']:.3f}, of cos(g*, v_j) "
                  f"{c['gan_auc_sim']:.3f} | knn pairs: precision {c['knn_precision']:.3f}, AUC of cos(v_i, v_j) "
                  f"{c['knn_auc_sim']:.3f}", flush=True)
        print(f"{name:12s} D held-out AUC (epoch:all/(a,g,n)) {aucs} | fresh D {r['fresh_d_auc']:.3f} | accepted "
              f"{r['accepted_anchors']} pairs {r['candidate_pairs']} cos(g*,a/p/n) {r['cos_gstar_a']:.3f}/"
              f"{r['cos_gstar_p']:.3f}/{r['cos_gstar_n']:.3f} | {r['seconds']} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
