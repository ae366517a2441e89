"""Which finished runs may be pooled into one mean ± std: those whose resolved configs agree on every key that
matters to their method, except the seed.

A row (see `collect.read_run`) holds its config as dotted keys. Keys that do not act on a run's method are
blanked before grouping and display, so a baseline row shows no GAN alpha and an NPID row no mining radius:

* `baseline.*` acts only on supervised baselines (method `baseline:<loss>`); `train.epochs_first` /
  `train.epochs_per_round` and `isl.*` only on ISL-family runs (isl, knn_mining, npid);
* `isl.gan.*`, `isl.mining.threshold` and `isl.mining.n_proxies` only on GAN mining (method isl);
  the rest of `isl.mining.*` (but `strategy`) not on NPID;
* machine settings (`MACHINE_KEYS`: paths, device, loader workers) never split a group, nor do the held-out
  evaluation keys (`eval.val_fraction`, `eval.val_seed`): they add val_* scores and change neither training nor
  the test scores (tests/test_eval_heldout.py).

Default grouping: method, experiment, then every config key whose (relevant) value differs between runs --
the keys of a sweep first -- leaving out keys that add no split (e.g. `isl.mining.strategy` next to method).
So a 50-epoch run and a 10-epoch sweep cell of the same experiment are two groups, each labelled by the key
that separates them. With an explicit --group-by, `pooled_differences` names the keys a group pools over.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

MACHINE_KEYS = ("seed", "output_root", "data.root", "data.download", "data.num_workers", "train.device")
NEVER_SPLIT = (*MACHINE_KEYS, "eval.val_fraction", "eval.val_seed")
GAN_ONLY = ("isl.mining.threshold", "isl.mining.n_proxies")
ISL_SCHEDULE = ("train.epochs_first", "train.epochs_per_round")


def _key(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def config_keys(rows: Sequence[dict]) -> list[str]:
    """The dotted config keys (plus `experiment`) present in any row, in the order of isl.config.Config
    (keys it does not know last, sorted)."""
    from isl.config import Config, to_dict

    from .collect import flatten

    order = {k: i for i, k in enumerate(flatten(to_dict(Config())))}
    keys = {"experiment"} | {k for row in rows for k in row if "." in k}
    return sorted((k for k in keys if k not in NEVER_SPLIT), key=lambda k: (order.get(k, len(order)), k))


def relevant(row: dict, key: str) -> bool:
    """Whether config `key` acts on this row's method (see the module docstring)."""
    method = str(row.get("method", ""))
    baseline = method.startswith("baseline")
    if key.startswith("baseline."):
        return baseline
    if key.startswith("isl.") or key in ISL_SCHEDULE:
        if baseline or method == "raw_pixels":
            return False
        strategy = row.get("isl.mining.strategy")
        if key.startswith("isl.gan.") or key in GAN_ONLY:
            return strategy in (None, "gan")
        if key.startswith("isl.mining.") and key != "isl.mining.strategy":
            return strategy != "none"
    return True


def relevant_only(row: dict) -> dict:
    """The row with the config keys that do not act on its method set to None."""
    return {k: (v if "." not in k or relevant(row, k) else None) for k, v in row.items()}


def varying_keys(rows: Sequence[dict], keys: Sequence[str]) -> list[str]:
    """Keys that take more than one (non-None) value among the rows."""
    return [k for k in keys if len({_key(r.get(k)) for r in rows if r.get(k) is not None}) > 1]


def _adds_split(rows: Sequence[dict], by: Sequence[str], key: str) -> bool:
    groups = {tuple(_key(r.get(k)) for k in by) for r in rows}
    return len({tuple(_key(r.get(k)) for k in (*by, key)) for r in rows}) > len(groups)


def default_group_by(rows: Sequence[dict], first: Sequence[str] = ()) -> list[str]:
    """method, experiment, then the config keys that split the runs (those in `first` first)."""
    by = ["method", "experiment"]
    keys = list(dict.fromkeys([*first, *config_keys(rows)]))
    for key in varying_keys(rows, keys):
        if key not in by and _adds_split(rows, by, key):
            by.append(key)
    return by


def pooled_differences(rows: Sequence[dict], by: Sequence[str]) -> dict[tuple, list[str]]:
    """{group key: config keys whose relevant values differ inside the group} for the groups that pool
    different configs (empty when every group holds seeds of one config)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(_key(row.get(k)) for k in by), []).append(row)
    keys = [k for k in config_keys(rows) if k not in by]
    out = {}
    for group, members in groups.items():
        differ = varying_keys(members, keys)
        if differ:
            out[group] = differ
    return out
