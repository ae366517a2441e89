"""Every default of every experiment, in one place, as typed dataclasses.

An experiment yaml (configs/*.yaml) holds only what differs from these defaults; the command line adds
dotted overrides (`--set isl.gan.alpha=2.0`). Unknown keys and wrong types are errors that list the valid
keys and the closest match. Machine paths (data root, output root) come from the environment
(ISL_DATA_ROOT, ISL_OUTPUT_ROOT) or the command line, never from experiment files.

The numbers follow the reference ISL code (github ZiweiWangTHU/ISL) unless a comment says otherwise.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GAN_STOPS = ("loss", "auc", "budget")          # what ends a round's GAN stage (see isl.train.gan_done)
THRESHOLD_MODES = ("absolute", "relative")     # h on D's score, or on its calibrated score (isl.gan)
QUOTA_COUNTS = ("undirected", "directed")      # what isl.mining.quota counts

def _config_dir() -> Path:
    """configs/ of the checkout (source and `pip install -e .`), else the copy a wheel installs as isl/configs."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "configs"


CONFIG_DIR = _config_dir()


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message says how to fix it."""


@dataclass
class DataConfig:
    name: str = "digits"            # digits | fashion_mnist | cifar10 | cifar100 | cifar100_20 | stl10 | svhn
    root: str = ""                  # machine path; empty -> $ISL_DATA_ROOT or ./data (keep it out of yaml)
    download: bool = False          # let torchvision download a missing data set
    verify_checksums: bool = True   # torchvision's md5 check of CIFAR / STL-10 / SVHN files
    train_split: str = "train"      # stl10: "train+unlabeled" to train on 105k images
    knn_split: str = "train"        # labelled split used as the kNN bank
    test_split: str = "test"        # queries of the kNN evaluation
    test_fraction: float = 0.2      # digits only: size of the stratified test split
    split_seed: int = 0             # digits only: seed of the stratified split (fixed across runs)
    augment: str = "default"        # augmentation preset of the train transform (see isl.data.transforms)
    augment_backend: str = "auto"   # auto | batched: the views of a whole batch drawn on the training device |
                                    # pil: per image in the DataLoader (torchvision's transforms, the reference)
    image_size: int = 0             # fashion_mnist only: resize every image to this side at load (0 = native 28)
    num_workers: int = -1           # DataLoader workers; -1 = auto: the available cores (at most 8) for the pil
                                    # backend's train loader, else 0 (in-process); 0 = always in-process


@dataclass
class ModelConfig:
    arch: str = "convnet"           # convnet (digits) | convnet_gn (GroupNorm) | resnet18 | resnet50 | resnet18_stl | resnet50_stl
    low_dim: int = 128              # d: size of the L2-normalised embedding


@dataclass
class OptimConfig:
    lr: float = 0.03                # SGD learning rate (reference code)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"        # cosine | step | constant; depends on epochs only, never on test metrics
    warmup_epochs: int = 0          # linear warm-up at the start of each encoder stage
    step_milestones: list[float] = field(default_factory=lambda: [0.6, 0.8])  # fractions of a stage
    step_gamma: float = 0.1
    restart_each_round: bool = True  # restart the schedule at every encoder stage (else one schedule for all)


@dataclass
class TrainConfig:
    batch_size: int = 128
    epochs_first: int = 200         # instance-discrimination epochs before the first mining round
    epochs_per_round: int = 200     # encoder epochs after each mining round
    amp: str = "off"                # off | auto | bf16 | fp16: autocast of the encoder (fp16 with a GradScaler); auto
                                    # = bf16 where the device runs it natively (isl/hardware.py), else off. Off by
                                    # default: bf16 cost Fashion-MNIST kNN accuracy on 2 of 2 seeds
                                    # (docs/results.md). The bank, objective, losses and GAN stay float32 (isl/amp.py)
    channels_last: str = "auto"     # auto | on | off: the encoder and its image batches in channels_last memory
                                    # format; auto = on for the conv encoders on CPU, and on CUDA under amp
    sync_bn: bool = False           # under torchrun: BatchNorm statistics over the global batch (CUDA only)
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    eval_every: int = 10            # epochs between evaluations (and always at the end of a stage)
    max_steps_per_epoch: int = 0    # >0 caps an epoch (smoke tests only)


@dataclass
class GANConfig:
    alpha: float = 1.0              # weight of the (a, p, g) terms; larger pulls g towards the negative
    noise_dim: int = 32             # z; 0 = the reference code's deterministic generator
    lr: float = 1e-4                # Adam, both networks (reference code)
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 128
    max_epochs: int = 200           # per round; stops earlier when the loss stops improving
    min_epochs: int = 5
    patience: int = 10              # epochs without an improvement of min_delta in the monitored loss
    min_delta: float = 1e-3
    num_candidates: int = 4096      # negatives: the hardest of this many random entries outside P_i
    positive_source: str = "mined"  # mined: p drawn from P_i, i included (paper) | other: a member other than i,
                                    # else the anchor's other vector (view / bank row) | self: v_i (code)
    anchor: str = "bank_row"        # a = v_i (bank_row) | the encoder's feature of an augmented view (view, code)
    num_views: int = 2              # augmented-view feature sets computed per round for anchor/positive views
    negative_pool: float = 1.0      # cap the negative candidates at this fraction of N (1 = num_candidates)
    d_steps: int = 1                # D updates per G update
    d_lr: float = 0.0               # D's Adam lr (0 = isl.gan.lr)
    loss_weights: str = "paper"     # paper: real 1, fakes 1 : alpha | reference: 1/2, fakes share 1/2 as 1 : alpha
    stop: str = "loss"              # early stop on D's held-out loss | auc: its AUC, epochs >= min_epochs | budget
    min_d_gap: float = 0.0          # mine only if D(real) - D(fake_pos) on held-out triplets exceeds this
    min_auc: float = 0.0            # mine only if D's held-out AUC (real vs fakes) exceeds this (0.5 = chance)
    diag_steps: int = 300           # steps of the fresh-D diagnostic on the frozen G each round (0 = off)


@dataclass
class MiningConfig:
    strategy: str = "gan"           # a name in isl.strategies.STRATEGIES: gan (ISL) | knn | none (NPID)
    radius: float = 0.632           # r, Euclidean on unit vectors (0.632 = cosine 0.8, the reference's
                                    # adaptive radius at D = 0.5)
    radius_mode: str = "fixed"      # fixed | adaptive_cosine (reference: cos > R + (1 - s)(1 - R))
    adaptive_base: float = 0.6      # R of the adaptive rule (0.3 on ImageNet)
    threshold: float = 0.5          # h: accept the best proxy if D(a, g*, n) > h
    threshold_mode: str = "absolute"  # absolute: D's score | relative: D's score calibrated so that an
                                    # uninformed D scores 0.5 under any loss weights (isl.gan.calibrated_logit)
    fill: str = "random"            # a pass's candidates beyond the quota: random subset | ranked (best first) |
                                    # spread (ranked within each anchor, every anchor's best before any second)
    quota_count: str = "undirected"  # undirected pairs | directed: both directions count (the reference code's rate)
    n_proxies: int = 5              # proxies drawn per anchor; the best by D is kept
    topk: int = 10                  # at most this many neighbours of g* join P_i (0 = no cap)
    quota: float = 0.5              # new undirected pairs per round, as a fraction of N
    max_passes: int = 10            # mining passes per round before giving up on the quota
    chunk_size: int = 4096          # anchors per mining chunk


@dataclass
class ISLConfig:
    temperature: float = 0.1        # tau of the softmax over the memory bank
    bank_momentum: float = 0.5      # eta: v_i <- normalise(eta f_i + (1 - eta) v_i)
    lam: float = 0.5                # lambda: weight of L2 (hard positive enhancement)
    hard_positive: str = "least_similar"  # least_similar (paper) | most_similar (reference code)
    singleton_hard: str = "second_view"   # second_view (paper) | skip (reference code: no L2 without mined)
    hard_positive_query: str = "feature"  # rank mined positives by f_i . v_j (ours) | bank_row: v_i . v_j (code)
    l2_mean: str = "valid"          # L2 averaged over anchors with a hard positive (ours) | batch (reference code)
    rounds: int = 4                 # mining rounds (0 = NPID)
    fused_objective: bool = False   # the fused forward/backward (isl/objective_fused.py) in eager mode, same values;
                                    # false: isl/objective.py, the reference (as fast in eager mode)
    compile_objective: str = "auto"  # auto | on | off: the fused form with its B x N pass through torch.compile
                                    # (1.4x faster objective step at N = 50k); auto = on when B x N >= 2^22, where
                                    # the ~20 s compile pays back; eager (one warning) where compiling fails
    bank_chunk: int = 0             # >0: the objective over chunks of this many bank rows, never a B x N tensor
                                    # (isl/objective_chunked.py; ImageNet-sized banks; fused_objective unused);
                                    # 0: the B x N form
    gan: GANConfig = field(default_factory=GANConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)


@dataclass
class EvalConfig:
    knn_k: int = 200
    knn_temperature: float = 0.1
    kmeans_restarts: int = 10
    cluster_on: str = "all"         # all (train + test, "whole") | test | train ("split")
    backend: str = "auto"           # auto: kNN with faiss when present, k-means with scikit-learn (faiss on a GPU
                                    # faiss index) | faiss | torch (kNN in torch, k-means scikit-learn)
    linear_probe: bool = True       # also fit a linear classifier on the frozen features (linear_acc)
    val_fraction: float = 0.0       # > 0: also score a held-out part of the TRAIN split (val_* metrics, for model
                                    # selection without test labels); the test metrics are unchanged
    val_seed: int = 0               # which stratified part is held out (fixed across training seeds)
    batch_size: int = 512


@dataclass
class BaselineConfig:
    loss: str = "triplet"           # a name in baselines.registry.LOSSES
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    miner: str = "none"             # a name in baselines.miners.MINERS (none | easy | hard | semihard | ...)
    miner_kwargs: dict[str, Any] = field(default_factory=dict)
    sampler: str = "m_per_class"    # m_per_class | magnet | random
    m_per_class: int = 16           # 16 x 8 classes fills a batch of 128 on 10-class data sets
    epochs: int = 50
    loss_lr: float = 0.01           # learning rate of loss parameters (proxies, centres)
    magnet_clusters: int = 4        # Magnet: k-means clusters per class
    magnet_batch_clusters: int = 8  # Magnet: M clusters per batch
    magnet_refresh: int = 1         # Magnet: re-cluster every this many epochs


@dataclass
class Config:
    experiment: str = "digits_isl"  # runs/<experiment>/<timestamp>/
    seed: int = 0
    output_root: str = ""           # machine path; empty -> $ISL_OUTPUT_ROOT or ./runs
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    isl: ISLConfig = field(default_factory=ISLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


# ---------------------------------------------------------------- loading, merging, validating

def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _closest(key: str, choices) -> str:
    match = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Check `value` against the annotation `typ`; ints are accepted for floats."""
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        raise ConfigError(f"{where} is a section; set its keys instead (e.g. {where}.<key>=...)")
    if origin is list:
        (item,) = typing.get_args(typ)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list of {item.__name__}, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {k: dict(v) if isinstance(v, _KeyUpdates) else v for k, v in value.items()}
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)  # yaml 1.1 reads 3e-2 (no dot) as a string
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if typ in (int, float, str) and (not isinstance(value, typ) or isinstance(value, bool) and typ is not bool):
        raise ConfigError(f"{where} must be of type {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


# yaml 1.1 reads a bare `off` / `on` as false / true: these text keys take the booleans as their "off" / "on"
# choices (train.amp and train.channels_last used to be bools, so older run directories load too); None: a
# boolean true is refused (train.amp names a precision)
_BOOL_AS_TEXT = {"train.amp": (None, "off"), "train.channels_last": ("on", "off"),
                 "isl.compile_objective": ("on", "off")}


class _KeyUpdates(dict):
    """The mapping a dotted override builds on its way to a key: `baseline.loss_kwargs.margin=0.2` updates that
    one key of a mapping-valued field, where `baseline.loss_kwargs={margin: 0.2}` (or a yaml file) replaces it."""


def _merge(obj, updates: dict, prefix: str = "") -> None:
    types = _field_types(type(obj))
    for key, value in updates.items():
        where = f"{prefix}{key}"
        if key not in types:
            valid = ", ".join(sorted(types))
            raise ConfigError(f"unknown config key {where!r}{_closest(key, types)}; valid keys under "
                              f"{prefix.rstrip('.') or 'the top level'}: {valid}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where} is a section; give it a mapping, got {value!r}")
            _merge(current, value, where + ".")
        else:
            if isinstance(value, bool) and where in _BOOL_AS_TEXT:
                value = _BOOL_AS_TEXT[where][0 if value else 1]
                if value is None:
                    raise ConfigError(f"{where} takes a name, not true; valid choices: see the comment of {where} "
                                      f"in isl/config.py (train.amp: auto | off | bf16 | fp16)")
            if isinstance(value, _KeyUpdates) and isinstance(current, dict):
                value = {**current, **value}
            setattr(obj, key, _coerce(value, types[key], where))


def parse_override(text: str) -> dict:
    """'isl.gan.alpha=2.0' -> {'isl': {'gan': {'alpha': 2.0}}} (the value is parsed as yaml)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. isl.gan.alpha=2.0)")
    dotted, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    out: dict = _KeyUpdates()
    node = out
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, _KeyUpdates())
    node[parts[-1]] = value
    return out


def resolve_config_path(name: str | Path) -> Path:
    """A path, or a bare file name looked up in configs/ (so `--cfg cifar10.yaml` works anywhere)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    available = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))
    raise ConfigError(f"config {str(name)!r} not found as a path nor in {CONFIG_DIR}{_closest(str(name), available)}; "
                      f"available: {', '.join(available)}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, except that a key repeated in one mapping is an error (yaml keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one section; "
                                  "keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict:
    """An experiment file as a mapping; empty, binary, malformed or duplicate-key files are one-line errors."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8); give a yaml experiment file") from None
    if not text.strip() or all(line.lstrip().startswith("#") or not line.strip() for line in text.splitlines()):
        raise ConfigError(f"{path} is empty: an experiment file holds at least `experiment: <name>` and what "
                          "differs from the defaults (see configs/digits.yaml)")
    try:
        content = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        hint = " (yaml indents with spaces, not tabs)" if "\t" in text else ""
        raise ConfigError(f"{path} is not valid yaml{where}: {problem}{hint}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(content).__name__}")
    return content


def _merge_file(config: Config, content: dict, path: Path) -> None:
    try:
        _merge(config, content)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _fill_experiment(c: Config) -> None:
    """experiment: "{data.name}_baseline_{baseline.loss}" -> "cifar10_baseline_triplet" (after overrides)."""
    if "{" not in c.experiment:
        return
    try:
        c.experiment = c.experiment.format(**{f.name: getattr(c, f.name) for f in dataclasses.fields(c)})
    except (KeyError, AttributeError, IndexError, ValueError) as err:
        raise ConfigError(f"experiment {c.experiment!r}: cannot fill in {err}; name config keys in braces, "
                          "e.g. {data.name}_baseline_{baseline.loss}") from None


def load_config(cfg: str | Path | None = None, overrides: list[str] | None = None,
                data_root: str | None = None, output_root: str | None = None,
                base: str | Path | None = None) -> Config:
    """Defaults <- base file <- yaml file <- dotted overrides <- machine paths; validated.

    A yaml may name a base file merged before it, `_base_: datasets/digits.yaml` (relative to the yaml's folder,
    else a name in configs/); `base` replaces it (`train_baseline.py --data cifar10`). When the base file sets
    data.name, a different final data.name is an error: switch the whole base (model, batch, knn_k, ...), not
    the name alone. `experiment` may name config keys in braces, filled in after the overrides.
    """
    config = Config()
    content, path, base_path = {}, None, None
    if cfg is not None:
        path = resolve_config_path(cfg)
        content = read_yaml(path)
        base = base or content.get("_base_")
        content.pop("_base_", None)
    if base:
        base_path = Path(base)
        if path is not None and (path.parent / base_path).is_file():
            base_path = path.parent / base_path
        base_path = resolve_config_path(base_path)
        base_content = read_yaml(base_path)
        if "_base_" in base_content:
            raise ConfigError(f"{base_path}: a base file cannot have a _base_ of its own (one level only)")
        _merge_file(config, base_content, base_path)
    base_data = (base_content.get("data") or {}).get("name") if base_path is not None else None
    if path is not None:
        _merge_file(config, content, path)
    for text in overrides or []:
        _merge(config, parse_override(text))
    if base_data is not None and config.data.name != base_data:
        raise ConfigError(f"data.name={config.data.name!r}, but the base file {base_path} describes {base_data!r} "
                          f"(model, batch size, kNN k, experiment name); switch the base instead, e.g. "
                          f"train_baseline.py --data {config.data.name}")
    file_data = (content.get("data") or {}).get("name") if base_data is None else None
    if file_data is not None and config.data.name != file_data:
        _refuse_data_swap(config.data.name, file_data, path)
    _fill_experiment(config)
    config.data.root = data_root or config.data.root or os.environ.get("ISL_DATA_ROOT", "") or "./data"
    config.output_root = output_root or config.output_root or os.environ.get("ISL_OUTPUT_ROOT", "") or "./runs"
    validate(config)
    check_device(config.train.device)
    return config


def _refuse_data_swap(name: str, described: str, path: Path) -> None:
    """`--cfg digits.yaml --set data.name=svhn` would train SVHN at digits' image size, encoder and kNN k."""
    from .data import DATASETS
    if name not in DATASETS:
        return  # validate() lists the valid names
    own = CONFIG_DIR / f"{name}.yaml"
    hint = f"run its own config, --cfg {own.name}" if own.is_file() else "write a config for it (see configs/)"
    raise ConfigError(f"data.name={name!r}, but {path} describes {described!r} (image size, encoder, batch size, "
                      f"kNN k, experiment name); {hint}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(value: str, choices: tuple[str, ...], where: str) -> None:
    _check(value in choices, f"{where}={value!r} is not one of {', '.join(choices)}{_closest(value, choices)}")


# (dotted key, test, what is allowed); every float must also be finite. One table, read top to bottom.
_GE0, _GE1, _POS = (lambda v: v >= 0, ">= 0"), (lambda v: v >= 1, ">= 1"), (lambda v: v > 0, "> 0")
_UNIT_OPEN = (lambda v: 0 < v < 1, "in (0, 1)")
_UNIT_RIGHT = (lambda v: 0 < v <= 1, "in (0, 1]")
_UNIT_LEFT = (lambda v: 0 <= v < 1, "in [0, 1)")
_ANY = (lambda v: True, "a finite number")
RANGES: tuple[tuple[str, tuple], ...] = (
    ("seed", _GE0),
    ("data.test_fraction", _UNIT_OPEN), ("data.split_seed", _GE0),
    ("data.num_workers", (lambda v: v >= -1, ">= -1 (-1 = auto, 0 = in-process)")),
    ("model.low_dim", (lambda v: v >= 2, ">= 2")),
    ("optim.lr", _POS), ("optim.momentum", _UNIT_LEFT), ("optim.weight_decay", _GE0),
    ("optim.warmup_epochs", _GE0), ("optim.step_gamma", _POS),
    ("train.batch_size", (lambda v: v >= 2, ">= 2")), ("train.epochs_first", _GE0),
    ("train.epochs_per_round", _GE0), ("train.eval_every", _GE1), ("train.max_steps_per_epoch", _GE0),
    ("isl.temperature", _POS), ("isl.bank_momentum", _UNIT_RIGHT), ("isl.lam", _GE0), ("isl.rounds", _GE0),
    ("isl.bank_chunk", (lambda v: v >= 0, ">= 0 (0 = one matmul)")),
    ("isl.gan.alpha", _GE0), ("isl.gan.noise_dim", (lambda v: v >= 0, ">= 0 (0 = deterministic generator)")),
    ("isl.gan.lr", _POS), ("isl.gan.beta1", _UNIT_LEFT), ("isl.gan.beta2", _UNIT_LEFT),
    ("isl.gan.batch_size", _GE1), ("isl.gan.max_epochs", _GE1), ("isl.gan.min_epochs", _GE0),
    ("isl.gan.patience", _GE1), ("isl.gan.min_delta", _GE0), ("isl.gan.num_candidates", _GE1),
    ("isl.gan.min_d_gap", _ANY),
    ("isl.mining.radius", (lambda v: 0 < v <= 2, "in (0, 2] (Euclidean on unit vectors)")),
    ("isl.mining.adaptive_base", _UNIT_LEFT), ("isl.mining.threshold", (lambda v: 0 < v < 1, "in (0, 1) "
                                                                          "(a probability)")),
    ("isl.mining.n_proxies", _GE1), ("isl.mining.topk", (lambda v: v >= 0, ">= 0 (0 = no cap)")),
    ("isl.mining.quota", _POS), ("isl.mining.max_passes", _GE1), ("isl.mining.chunk_size", _GE1),
    ("eval.knn_k", _GE1), ("eval.knn_temperature", _POS), ("eval.kmeans_restarts", _GE1),
    ("eval.batch_size", _GE1), ("eval.val_fraction", _UNIT_LEFT), ("eval.val_seed", _GE0),
    ("baseline.m_per_class", _GE1), ("baseline.epochs", _GE1), ("baseline.loss_lr", _GE0),
    ("baseline.magnet_clusters", _GE1), ("baseline.magnet_batch_clusters", _GE1), ("baseline.magnet_refresh", _GE1),
)
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _get(c: Config, dotted: str) -> Any:
    for part in dotted.split("."):
        c = getattr(c, part)
    return c


def _check_range(key: str, value: Any, test, allowed: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value} is not allowed: it must be a finite number {allowed}")
    _check(test(value), f"{key}={value!r} is out of range: it must be {allowed}")


def check_device(name: str, where: str = "train.device") -> None:
    """A device string this machine has: auto | cpu | cuda | cuda:N (N < the GPU count) | mps."""
    import torch
    _check(bool(_DEVICE.fullmatch(name)), f"{where}={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        _check(index < count, f"{where}={name!r}, but this machine has {count} CUDA device(s); use {where}=auto "
               "or cpu")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        _check(mps is not None and mps.is_available(), f"{where}='mps', but MPS is not available here; use "
               f"{where}=auto or cpu")


def validate(c: Config) -> None:
    """Every field's range (finite floats, positive counts) and every choice, one ConfigError line per problem.

    Machine facts (does the device exist, is k below the bank size) are checked where they are known:
    `check_device` in load_config, the bank size in isl.builders.build_eval_loaders.
    """
    for key, (test, allowed) in RANGES:
        _check_range(key, _get(c, key), test, allowed)
    isl, gan, mine = c.isl, c.isl.gan, c.isl.mining
    _check(bool(c.experiment.strip()) and "/" not in c.experiment and c.experiment not in (".", ".."),
           f"experiment={c.experiment!r} names a folder under the output root: give a non-empty name without '/'")
    for i, m in enumerate(c.optim.step_milestones):
        _check_range(f"optim.step_milestones[{i}]", m, lambda v: 0 <= v <= 1, "in [0, 1] (a fraction of a stage)")
    _check(gan.min_epochs <= gan.max_epochs, f"isl.gan.min_epochs={gan.min_epochs} is larger than "
           f"isl.gan.max_epochs={gan.max_epochs}; lower min_epochs or raise max_epochs")
    _check(bool(_DEVICE.fullmatch(c.train.device)),
           f"train.device={c.train.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    # the choice lists live with the code that implements them (imported here, not copied)
    from .data import DATASETS
    from .data.transforms import AUGMENT_BACKENDS, augment_presets
    from .mining import RADIUS_MODES
    from .models.encoder import TRUNKS
    from .neighbors import BACKENDS
    from .objective import HARD_POSITIVE_QUERIES, L2_MEANS, SINGLETON_HARD_MODES
    from .positives import HARD_POSITIVE_MODES
    from .strategies import STRATEGIES
    from .training import SCHEDULES
    from .triplets import POSITIVE_SOURCES
    _choice(c.data.name, tuple(DATASETS), "data.name")
    splits = DATASETS[c.data.name].splits
    for key in ("train_split", "knn_split", "test_split"):
        _check(getattr(c.data, key) in splits, f"data.{key}={getattr(c.data, key)!r} is not a split of "
               f"{c.data.name}; choose one of {', '.join(splits)}")
    presets = augment_presets(c.data.name)
    _check(c.data.augment in presets, f"data.augment={c.data.augment!r} is not a preset of {c.data.name}; choose "
           f"one of {', '.join(presets)}{_closest(c.data.augment, presets)}")
    _choice(c.data.augment_backend, AUGMENT_BACKENDS, "data.augment_backend")
    _choice(c.model.arch, tuple(TRUNKS), "model.arch")
    _choice(isl.hard_positive, HARD_POSITIVE_MODES, "isl.hard_positive")
    _choice(isl.singleton_hard, SINGLETON_HARD_MODES, "isl.singleton_hard")
    _choice(isl.hard_positive_query, HARD_POSITIVE_QUERIES, "isl.hard_positive_query")
    _choice(isl.l2_mean, L2_MEANS, "isl.l2_mean")
    _choice(mine.strategy, tuple(STRATEGIES), "isl.mining.strategy")
    _choice(mine.radius_mode, RADIUS_MODES, "isl.mining.radius_mode")
    _choice(gan.positive_source, POSITIVE_SOURCES, "isl.gan.positive_source")
    from .gan import LOSS_WEIGHTS
    from .mining import FILLS
    from .triplets import ANCHORS
    _choice(gan.anchor, ANCHORS, "isl.gan.anchor")
    _choice(gan.loss_weights, LOSS_WEIGHTS, "isl.gan.loss_weights")
    _choice(gan.stop, GAN_STOPS, "isl.gan.stop")
    _choice(mine.fill, FILLS, "isl.mining.fill")
    _choice(mine.threshold_mode, THRESHOLD_MODES, "isl.mining.threshold_mode")
    _choice(mine.quota_count, QUOTA_COUNTS, "isl.mining.quota_count")
    _check(gan.num_views >= 1, f"isl.gan.num_views must be >= 1, got {gan.num_views}")
    _check(0 < gan.negative_pool <= 1, f"isl.gan.negative_pool (a fraction of N) must be in (0, 1], got "
           f"{gan.negative_pool}")
    _check(gan.d_steps >= 1, f"isl.gan.d_steps must be >= 1, got {gan.d_steps}")
    _check(gan.d_lr >= 0 and math.isfinite(gan.d_lr), f"isl.gan.d_lr must be >= 0 (0 = isl.gan.lr), got {gan.d_lr}")
    _check(0 <= gan.min_auc < 1, f"isl.gan.min_auc must be in [0, 1) (0.5 = chance), got {gan.min_auc}")
    _check(gan.diag_steps >= 0, f"isl.gan.diag_steps must be >= 0, got {gan.diag_steps}")
    _choice(c.optim.schedule, SCHEDULES, "optim.schedule")
    _choice(c.eval.cluster_on, ("all", "test", "train"), "eval.cluster_on")
    _choice(c.eval.backend, BACKENDS, "eval.backend")
    from .amp import AMP_MODES, CHANNELS_LAST_MODES
    _choice(c.train.amp, AMP_MODES, "train.amp")
    _choice(c.train.channels_last, CHANNELS_LAST_MODES, "train.channels_last")
    _choice(isl.compile_objective, ("auto", "on", "off"), "isl.compile_objective")
    _check(c.data.image_size == 0 or (c.data.name == "fashion_mnist" and 8 <= c.data.image_size <= 64),
           f"data.image_size={c.data.image_size}: only fashion_mnist can be resized at load, to 8..64 pixels "
           "(0 keeps the native size)")


def to_dict(c: Config) -> dict:
    return dataclasses.asdict(c)


def from_dict(d: dict) -> Config:
    """Rebuild a Config from `to_dict` output (e.g. a checkpoint's or a run directory's config)."""
    config = Config()
    _merge(config, d)
    validate(config)
    return config


def dump_yaml(c: Config) -> str:
    return yaml.safe_dump(to_dict(c), sort_keys=False)
