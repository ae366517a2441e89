"""Read finished run directories into flat rows, and summarise rows as mean +- std over seeds.

A finished run directory (see `isl.rundir`) holds results.json (the final metrics) and config.yaml (the
resolved config). A row is results.json with the config flattened into dotted keys next to it
(`"isl.gan.alpha": 2.0`), so the values a sweep changed are read back from what the run actually used.
Results keys never contain a dot, so the two never collide.

Statistics over seeds: the mean and the sample standard deviation (ddof = 1); with one value the std is
NaN and printed as nothing. Missing or null metrics (e.g. no mined pairs -> no precision) are skipped.
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

METRICS = ("knn_acc", "linear_acc", "nmi", "acc", "ari", "pair_precision", "d_auc", "fresh_d_auc", "wall_time_s")
PLOT_METRICS = ("knn_acc", "nmi", "acc", "pair_precision")
METRIC_TITLES = {"knn_acc": "kNN acc", "linear_acc": "linear probe", "nmi": "NMI", "acc": "ACC", "ari": "ARI", "pair_precision": "pair precision",
                 "d_auc": "D AUC", "fresh_d_auc": "fresh-D AUC", "wall_time_s": "wall time (s)", "pairs": "pairs",
                 "global_epoch": "epochs"}
# results.json keys of GAN runs (isl.train.run_isl): means over the run's mining passes
MINING_DIAGNOSTICS = ("cos_gstar_a", "cos_gstar_p", "cos_gstar_n", "frac_knn_shared", "precision_shared",
                      "precision_gan_only")
MINING_DIAGNOSTIC_NOTES = {"cos_gstar_a": "mean cos(g*, a) of accepted anchors", "cos_gstar_p": "cos(g*, p)",
                           "cos_gstar_n": "cos(g*, n)",
                           "frac_knn_shared": "fraction of the mined pairs that knn mining (same r, top-k) also finds",
                           "precision_shared": "label precision of those shared pairs",
                           "precision_gan_only": "label precision of the pairs only the GAN finds"}
METRIC_TITLES.update({"cos_gstar_a": "cos(g*, a)", "cos_gstar_p": "cos(g*, p)", "cos_gstar_n": "cos(g*, n)",
                      "frac_knn_shared": "shared with knn", "precision_shared": "precision (shared)",
                      "precision_gan_only": "precision (GAN only)"})
# results.json keys of runs with eval.val_fraction > 0: the same scores on a held-out part of the train split
# (isl.training.evaluate_features), the ones to select hyper-parameters or schedules by
SELECTION_METRICS = ("val_knn_acc", "val_linear_acc", "val_nmi", "val_acc", "val_ari")
METRIC_TITLES.update({f"val_{m}": f"held-out {METRIC_TITLES[m]}" for m in ("knn_acc", "linear_acc", "nmi", "acc",
                                                                            "ari")})
HIGHER_IS_BETTER = ("knn_acc", "linear_acc", "nmi", "acc", "ari", "pair_precision", *SELECTION_METRICS)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'isl': {'gan': {'alpha': 2}}} -> {'isl.gan.alpha': 2}; mappings named *kwargs stay whole."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict) and not str(key).endswith("kwargs"):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Shortest unique dotted suffix of each key: isl.gan.alpha -> alpha (isl.mining.radius -> radius)."""
    out: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if all(other == key or not (other == name or other.endswith("." + name)) for other in keys):
                break
        out[key] = name
    return out


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every folder holding a results.json at or below `paths` (run dirs, sweep dirs, runs/), sorted."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; give finished run directories or sweep folders "
                                    f"(anything with results.json files below it)")
        if path.is_file():
            path = path.parent
        found.update(p.parent for p in path.rglob("results.json"))
    return sorted(found)


def sweep_variant(run_dir: str | Path) -> str | None:
    """The sweep variant a run belongs to, from the `variant=<name>` folder above it (the layout tools/ablate.py
    writes: runs/variant=<name>/seed=<s>/...), or None. A folder that also names grid values
    (`variant=gan_all_alpha=0.5`) is ambiguous, as variant names may hold '_'; it is read through the sweep's
    sweep.json when one lies above the run, else left None."""
    parts = Path(run_dir).parts
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        if not part.startswith("variant="):
            continue
        if part.count("=") == 1:
            return part.split("=", 1)[1]
        for j in range(i, 0, -1):
            spec = Path(*parts[:j]) / "sweep.json"
            if spec.is_file():
                names = json.loads(spec.read_text()).get("variants") or {}
                hits = [n for n in names if part.startswith(f"variant={n}_")]
                return max(hits, key=len) if hits else None
        return None
    return None


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """results.json + flattened config.yaml (if present) of one run, plus its `run_dir` and, for a run of a
    sweep's named variant, `variant` (so reports can group or label by it: --group-by variant)."""
    run_dir = Path(run_dir)
    with open(run_dir / "results.json") as fh:
        row = json.load(fh)
    if not isinstance(row, dict):
        raise ValueError(f"{run_dir / 'results.json'} must hold a JSON object, got {type(row).__name__}")
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        with open(cfg_path) as fh:
            row = {**flatten(yaml.safe_load(fh) or {}), **row}
    metrics = run_dir / "metrics.jsonl"
    if "d_auc" in row and any(k not in row for k in MINING_DIAGNOSTICS) and metrics.is_file():
        # a GAN run written before results.json carried these: the same means, from its own log
        with open(metrics) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        row = {**mining_diagnostics(records), **row}
    variant = sweep_variant(run_dir)
    if variant is not None:
        row.setdefault("variant", variant)
    row["run_dir"] = str(run_dir)
    return row


def mining_diagnostics(records: Iterable[dict]) -> dict[str, float | None]:
    """Means over a run's mining-pass records (metrics.jsonl) of each of MINING_DIAGNOSTICS (None if absent)."""
    passes = [r for r in records if r.get("stage") == "mining"]
    out = {}
    for key in MINING_DIAGNOSTICS:
        values = [r[key] for r in passes if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        out[key] = sum(values) / len(values) if values else None
    return out


def collect(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per finished run found under `paths`."""
    return [read_run(p) for p in find_run_dirs(paths)]


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, count) of the finite numbers among `values`; NaN where undefined."""
    xs = [v for v in map(_number, values) if math.isfinite(v)]
    if not xs:
        return math.nan, math.nan, 0
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
    return mean, std, len(xs)


def sort_key(value: Any) -> tuple:
    """Numbers first in numeric order, then everything else by its text."""
    number = _number(value)
    return (0, number, "") if math.isfinite(number) else (1, 0.0, str(value))


def aggregate(rows: Sequence[dict], by: Sequence[str], metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
    """Group rows by the values of `by`; each group: the `by` values, n (runs), seeds, <m>_mean, <m>_std."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(_hashable(row.get(k)) for k in by), []).append(row)
    out = []
    for key in sorted(groups, key=lambda k: tuple(sort_key(v) for v in k)):
        members = groups[key]
        group: dict[str, Any] = {k: members[0].get(k) for k in by}
        group["n"] = len(members)
        group["seeds"] = sorted({m.get("seed") for m in members}, key=sort_key)
        for metric in metrics:
            group[f"{metric}_mean"], group[f"{metric}_std"], _ = mean_std(m.get(metric) for m in members)
        out.append(group)
    return out


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def write_csv(path: str | Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """Rows as CSV with the given columns (NaN and None as empty cells; lists as JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
    return path


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """'0.912 ± 0.004', '0.912' (one seed), '–' (no value)."""
    if not math.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}f}"
    return f"{text} ± {std:.{digits}f}" if math.isfinite(std) else text


def markdown_table(groups: Sequence[dict], by: Sequence[str], metrics: Sequence[str] = METRICS,
                   bold_best: bool = True) -> str:
    """A markdown table: the `by` columns (short names), n, then mean ± std of each metric.

    With `bold_best`, the best mean of each higher-is-better score is bold, compared only among the rows with
    the most runs (n) for that score: one lucky seed does not outrank a mean over three."""
    names = short_names([k for k in by if "." in k])
    header = [names.get(k, k) for k in by] + ["n"] + [METRIC_TITLES.get(m, m) for m in metrics]
    best = {}
    for m in metrics:
        scored = [g for g in groups if math.isfinite(g[f"{m}_mean"])]
        most = max((g["n"] for g in scored), default=0)
        means = [g[f"{m}_mean"] for g in scored if g["n"] == most]
        if bold_best and m in HIGHER_IS_BETTER and len(set(means)) > 1:
            best[m] = (most, max(means))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        cells = [str(_cell(g.get(k))) for k in by] + [str(g["n"])]
        for m in metrics:
            text = format_mean_std(g[f"{m}_mean"], g[f"{m}_std"], 0 if m in ("wall_time_s", "global_epoch") else 3)
            cells.append(f"**{text}**" if m in best and (g["n"], g[f"{m}_mean"]) == best[m] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def round_table(records: Sequence[dict]) -> list[dict[str, Any]]:
    """Per-round summary of a run's metrics.jsonl records: GAN epochs and last losses, new and total mined
    pairs and their precision, and the last kNN / NMI evaluation of the round's encoder stage."""
    rounds: dict[int, dict[str, Any]] = {}
    for rec in records:
        if "round" not in rec or rec.get("stage") == "final":
            continue
        r = rounds.setdefault(int(rec["round"]), {"round": int(rec["round"]), "gan_epochs": 0, "new_pairs": 0})
        stage = rec.get("stage")
        if stage == "gan":
            r["gan_epochs"] += 1
            r["d_loss"], r["g_loss"] = rec.get("d_loss"), rec.get("g_loss")
        elif stage == "mining":
            r["new_pairs"] += int(rec.get("new_pairs") or 0)
            r["pairs"], r["pair_precision"] = rec.get("pairs"), rec.get("pair_precision")
        elif stage == "encoder":
            r["pairs"], r["pair_precision"] = rec.get("pairs", r.get("pairs")), rec.get("pair_precision")
            r["encoder_epochs"] = rec.get("epoch")
            if rec.get("knn_acc") is not None:
                r["knn_acc"], r["nmi"] = rec["knn_acc"], rec.get("nmi")
    return [rounds[k] for k in sorted(rounds)]


def present_selection_metrics(rows: Sequence[dict]) -> list[str]:
    """The held-out SELECTION_METRICS that at least one row has (runs made with eval.val_fraction > 0)."""
    return [m for m in SELECTION_METRICS if any(r.get(m) is not None for r in rows)]


def held_out_groups(rows: Sequence[dict], by: Sequence[str], metrics: Sequence[str],
                    selection: Sequence[str]) -> list[dict[str, Any]]:
    """`aggregate` over only the rows that have held-out scores, so n counts the runs that have them."""
    return aggregate([r for r in rows if any(r.get(m) is not None for m in selection)], by, metrics)


def parse_reference(text: str) -> dict[str, str]:
    """'variant=knn' or 'method=knn_mining,isl.gan.stop=auc' -> {key: value text} (the runs a paired comparison
    is made against)."""
    ref = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--paired {text!r}: give KEY=VALUE pairs, e.g. variant=knn or method=knn_mining")
        ref[key.strip()] = value.strip()
    if not ref:
        raise ValueError("--paired needs at least one KEY=VALUE, e.g. variant=knn")
    return ref


def _matches(row: dict, ref: dict[str, str]) -> bool:
    return all(str(_cell(row.get(k))) == v for k, v in ref.items())


def paired_differences(rows: Sequence[dict], by: Sequence[str], ref: dict[str, str], metrics: Sequence[str],
                       match: Sequence[str] = (), p_adjust: str = "none",
                       p_family: str = "metric") -> list[dict[str, Any]]:
    """Per group of `by`, the differences between each run's metrics and those of the reference run of the same
    seed (and the same values of `match`, e.g. round), summarised as mean ± sample std over the pairs, with
    <m>_wins = how many pairs are above the reference and <m>_p = the two-sided paired t-test p-value (the
    differences' mean against zero; NaN with fewer than 2 pairs or no spread). Runs of one seed share the data
    split and the initial encoder, and mining variants also share round 0 (the same training before any mining;
    NPID does not), so paired differences show what the seed spread of each mean hides. Groups without a paired
    seed are left out; a seed with several reference runs is an error (say which runs to compare with a narrower
    reference). With `p_adjust` ("holm" or "bh", see `adjust_p`) each <m>_p_adj corrects <m>_p for the other tests of
    its family: with `p_family` "metric" the groups compared with the reference on that metric (within each value of
    `match`: one family per metric and round), with "table" every p-value returned (all groups, metrics and values
    of `match` together: the correction for asking whether anything in the table differs)."""
    if p_family not in P_FAMILY:
        raise ValueError(f"p-value family {p_family!r}: choose one of {', '.join(P_FAMILY)}")
    reference: dict[tuple, dict] = {}
    for row in rows:
        if _matches(row, ref):
            key = (row.get("seed"), *(_hashable(row.get(k)) for k in match))
            if key in reference:
                raise ValueError(f"--paired {','.join(f'{k}={v}' for k, v in ref.items())} names several runs of "
                                 f"seed {key[0]}; narrow it (add a config key, e.g. variant=knn)")
            reference[key] = row
    if not reference:
        raise ValueError(f"--paired {','.join(f'{k}={v}' for k, v in ref.items())} matches no run; give a key and "
                         f"value the runs have (e.g. variant=knn, method=knn_mining)")
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for row in rows:
        other = reference.get((row.get("seed"), *(_hashable(row.get(k)) for k in match)))
        if other is not None and other is not row and not _matches(row, ref):
            groups.setdefault(tuple(_hashable(row.get(k)) for k in by), []).append((row, other))
    out = []
    for key in sorted(groups, key=lambda k: tuple(sort_key(v) for v in k)):
        pairs = groups[key]
        group: dict[str, Any] = {k: pairs[0][0].get(k) for k in by}
        group["n"] = len(pairs)
        group["seeds"] = sorted({run.get("seed") for run, _ in pairs}, key=sort_key)
        for m in metrics:
            deltas = [_number(run.get(m)) - _number(other.get(m)) for run, other in pairs]
            deltas = [d for d in deltas if math.isfinite(d)]
            group[f"{m}_mean"], group[f"{m}_std"], group[f"{m}_pairs"] = mean_std(deltas)
            group[f"{m}_wins"] = sum(d > 0 for d in deltas)
            group[f"{m}_p"] = paired_t_p(group[f"{m}_mean"], group[f"{m}_std"], group[f"{m}_pairs"])
        out.append(group)
    if p_adjust != "none":
        families: dict[tuple, list[tuple[dict, str]]] = {}
        for group in out:
            for m in metrics:
                key = () if p_family == "table" else (m, *(_hashable(group.get(k)) for k in match))
                families.setdefault(key, []).append((group, m))
        for family in families.values():
            for (group, m), p in zip(family, adjust_p([g[f"{m}_p"] for g, m in family], p_adjust)):
                group[f"{m}_p_adj"] = p
    return out


P_ADJUST = ("none", "holm", "bh")
P_FAMILY = ("metric", "table")
P_ADJUST_TITLES = {"holm": "Holm", "bh": "BH"}


def adjust_p(p_values: Sequence[float], method: str) -> list[float]:
    """p-values corrected for testing them together; NaN entries stay NaN and do not count as tests. holm: Holm's
    step-down correction (controls the chance of any false positive among the tests; sorted ascending, the k-th
    smallest p becomes max over j <= k of min(1, (m - j + 1) p_(j))). bh: Benjamini-Hochberg (controls the expected
    share of false positives; scipy.stats.false_discovery_control)."""
    if method not in P_ADJUST:
        raise ValueError(f"p-value correction {method!r}: choose one of {', '.join(P_ADJUST)}")
    if method == "none":
        return [float(p) for p in p_values]
    finite = [i for i, p in enumerate(p_values) if math.isfinite(p)]
    out = [math.nan] * len(p_values)
    if not finite:
        return out
    values = [float(p_values[i]) for i in finite]
    if method == "holm":
        order = sorted(range(len(values)), key=values.__getitem__)
        adjusted, running = [0.0] * len(values), 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (len(values) - rank) * values[i]))
            adjusted[i] = running
    else:
        from scipy.stats import false_discovery_control
        adjusted = [float(p) for p in false_discovery_control(values, method="bh")]
    for i, p in zip(finite, adjusted):
        out[i] = p
    return out


def paired_t_p(mean: float, std: float, n: int) -> float:
    """Two-sided p-value of a paired t-test from the differences' mean, sample std and count (n - 1 degrees of
    freedom); NaN when it is undefined (n < 2 or zero spread). With 3 seeds only a large, steady difference gets a
    small p: read it as how far the seeds are from settling the question, not as a verdict."""
    if n < 2 or not math.isfinite(std) or std == 0:
        return math.nan
    from scipy.stats import t
    return float(2 * t.sf(abs(mean) / (std / math.sqrt(n)), n - 1))


def paired_table(groups: Sequence[dict], by: Sequence[str], metrics: Sequence[str], p_adjust: str = "none") -> str:
    """Markdown of `paired_differences`: per metric, the mean difference ± std and (wins/pairs, paired t-test p,
    and the corrected p labelled by its method when `p_adjust` is not "none")."""
    adjusted_title = P_ADJUST_TITLES.get(p_adjust)
    names = short_names([k for k in by if "." in k])
    header = [names.get(k, k) for k in by] + ["seeds"] + [f"Δ {METRIC_TITLES.get(m, m)}" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        cells = [str(_cell(g.get(k))) for k in by] + [",".join(str(s) for s in g["seeds"])]
        for m in metrics:
            mean, std, n = g[f"{m}_mean"], g[f"{m}_std"], g[f"{m}_pairs"]
            if not n:
                cells.append("–")
                continue
            text = f"{mean:+.3f}" + (f" ± {std:.3f}" if math.isfinite(std) else "")
            p, p_adj = g[f"{m}_p"], g.get(f"{m}_p_adj", math.nan)
            cells.append(f"{text} ({g[f'{m}_wins']}/{n}" + (f", p {p:.2f}" if math.isfinite(p) else "")
                         + (f", {adjusted_title} {p_adj:.2f}" if math.isfinite(p_adj) else "") + ")")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


ROUND_METRICS = ("knn_acc", "linear_acc", "nmi", "acc", "ari", "pair_precision")
# per round of a GAN run: result key -> key of its gan_diag record in metrics.jsonl
ROUND_GAN_METRICS = {"d_auc": "heldout_auc", "fresh_d_auc": "fresh_d_auc"}


def round_scores(records: Sequence[dict]) -> list[dict[str, Any]]:
    """The scores at the end of each round of a run's metrics.jsonl: per round, the last evaluated encoder
    record (training stops there, so a run with isl.rounds = R reports round R's scores), with its global epoch,
    ROUND_METRICS and the held-out SELECTION_METRICS (None where absent), and for GAN runs the ROUND_GAN_METRICS
    of the GAN stage that mined that round's pairs (its `gan_diag` record: the co-trained D's held-out AUC and the
    fresh D's). Rounds without an evaluation are left out; sorted by round."""
    last: dict[int, dict] = {}
    diag: dict[int, dict] = {}
    for rec in records:
        if "round" not in rec:
            continue
        if rec.get("stage") == "encoder" and rec.get("knn_acc") is not None:
            last[int(rec["round"])] = rec
        elif rec.get("stage") == "gan_diag":
            diag[int(rec["round"])] = rec
    return [{"round": r, "global_epoch": rec.get("global_epoch"),
             **{m: rec.get(m) for m in (*ROUND_METRICS, *SELECTION_METRICS)},
             **{m: diag.get(r, {}).get(source) for m, source in ROUND_GAN_METRICS.items()}}
            for r, rec in sorted(last.items())]


def load_published(path: str | Path) -> list[dict[str, Any]]:
    """Rows of published numbers from a yaml file {dataset, rows: [{method, source, <metric>: value}]}.

    Each row's method reads "<method> (published)" and its experiment is the data set, so the rows sit beside
    measured ones in a report without being mistaken for them; `source` is kept for the footnote.
    """
    with open(path) as fh:
        spec = yaml.safe_load(fh) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("rows"), list):
        raise ValueError(f"{path}: expected a mapping with `dataset` and a list `rows`")
    rows = []
    for entry in spec["rows"]:
        if "method" not in entry or "source" not in entry:
            raise ValueError(f"{path}: every row needs `method` and `source`, got {entry}")
        rows.append({**entry, "method": f"{entry['method']} (published)",
                     "experiment": spec.get("dataset", Path(path).stem), "seed": None, "published": True})
    return rows


ARCHIVED_FILES = ("results.json", "config.yaml", "metrics.jsonl")


def archive_runs(paths: Iterable[str | Path], dest: str | Path) -> list[Path]:
    """Copy the small text files of every finished run under `paths` (ARCHIVED_FILES: never checkpoints or
    TensorBoard events) to dest/<path relative to the folder given>, so that results can be committed and a
    table rebuilt from them later (`tools/report.py dest`). The archived results.json names its archived folder
    as `run_dir` (as `dest` was given), not the machine path it ran in. Returns the archived run folders."""
    import shutil

    from ..eval.report import write_json

    out = []
    for root in map(Path, paths):
        for run_dir in find_run_dirs([root]):
            rel = run_dir.relative_to(root) if run_dir != root else Path(run_dir.name)
            target = Path(dest) / rel
            target.mkdir(parents=True, exist_ok=True)
            for name in ARCHIVED_FILES:
                if (run_dir / name).is_file():
                    shutil.copy2(run_dir / name, target / name)
            with open(target / "results.json") as fh:
                results = json.load(fh)
            if isinstance(results, dict) and "run_dir" in results:
                write_json(target / "results.json", {**results, "run_dir": target.as_posix()})
            out.append(target)
    return out
