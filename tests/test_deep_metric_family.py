"""Properties every loss of the Deep_metric family must have: pml's contract, finite values and gradients on
degenerate batches, clear errors on bad input, seeded draws, miners and reducers that compose, no Python
loop in the forward, and a baseline config per loss."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.miners import BatchEasyHardMiner, MultiSimilarityMiner
from pytorch_metric_learning.reducers import DoNothingReducer, SumReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

import baselines.deep_metric as family
from baselines.deep_metric import DEEP_METRIC_LOSSES

NAMES = sorted(DEEP_METRIC_LOSSES)
CENTRE_LOSSES = {"dm_center", "center_nca", "center_pair", "cluster_nca"}  # no miner tuples
SINGLETON_CENTRES = {"dm_center", "center_nca", "center_pair"}  # a singleton class is its own centre
SEEDED = {name for name, cls in DEEP_METRIC_LOSSES.items() if "seed" in inspect.signature(cls).parameters}
ROOT = Path(__file__).resolve().parent.parent


def unit_batch(num: int = 16, dim: int = 8, classes: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(num, dim, generator=gen), dim=1)
    return x.requires_grad_(), torch.arange(num) % classes


def value_and_grad(loss, x, labels, **kwargs):
    value = loss(x, labels, **kwargs)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def test_registry_names_and_classes():
    assert len(NAMES) == 20
    for name, cls in DEEP_METRIC_LOSSES.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert issubclass(cls, BaseMetricLossFunction)
    for clash in ("contrastive", "triplet", "batch_hard_triplet", "binomial_deviance", "nca", "center"):
        assert clash not in DEEP_METRIC_LOSSES


@pytest.mark.parametrize("name", NAMES)
def test_finite_nonzero_gradient_on_a_normal_batch(name):
    x, labels = unit_batch()
    value, grad = value_and_grad(DEEP_METRIC_LOSSES[name](), x, labels)
    assert value.dim() == 0 and torch.isfinite(value)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_one_class_gives_zero_loss_with_zero_gradient(name):
    x, _ = unit_batch(8)
    value, grad = value_and_grad(DEEP_METRIC_LOSSES[name](), x, torch.zeros(8, dtype=torch.long))
    assert value == 0 and (grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_no_positive_pair(name):
    x, _ = unit_batch(8)
    value, grad = value_and_grad(DEEP_METRIC_LOSSES[name](), x, torch.arange(8))
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    if name not in SINGLETON_CENTRES:
        assert value == 0 and (grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", ["all_equal", "equal_within_class", "two_samples", "unit_all_equal"])
def test_duplicates_and_tiny_batches_stay_finite(name, case):
    if case == "all_equal":
        x, labels = torch.ones(8, 5), torch.arange(8) % 2
    elif case == "unit_all_equal":
        x, labels = torch.full((8, 5), 5 ** -0.5), torch.arange(8) % 3
    elif case == "equal_within_class":
        x, labels = torch.randn(3, 5).repeat_interleave(3, 0), torch.arange(3).repeat_interleave(3)
    else:
        x, labels = torch.randn(2, 5), torch.tensor([0, 1])
    value, grad = value_and_grad(DEEP_METRIC_LOSSES[name](), x.clone().requires_grad_(), labels)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_and_autocast_compute_in_float32(name):
    x, labels = unit_batch(16)
    low = x.detach().bfloat16().requires_grad_()
    kwargs = {"seed": 2} if name in SEEDED else {}
    expected = DEEP_METRIC_LOSSES[name](**kwargs)(low.detach().float(), labels)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        value, grad = value_and_grad(DEEP_METRIC_LOSSES[name](**kwargs), low, labels)
    assert value.dtype == torch.float32 and float(value) == pytest.approx(float(expected), rel=1e-6, abs=1e-7)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad.float()).all()


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises_a_clear_error(name):
    loss = DEEP_METRIC_LOSSES[name]()
    x, labels = unit_batch(6)
    with pytest.raises(ValueError, match="B x d"):
        loss(x[0], labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        loss(x, labels[:5])
    with pytest.raises(TypeError, match="integer"):
        loss(x, labels.float())
    with pytest.raises(ValueError, match="at least 2"):
        loss(x[:1], labels[:1])
    with pytest.raises(ValueError, match="ref_emb"):
        loss(x, labels, ref_emb=x.detach())
    with pytest.raises(ValueError, match="distance"):
        DEEP_METRIC_LOSSES[name](distance=object())


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seeded_losses_reproduce(name):
    x, labels = unit_batch(24, classes=3)
    first = [float(DEEP_METRIC_LOSSES[name](seed=4)(x, labels).detach()) for _ in range(2)]
    assert first[0] == first[1]
    loss = DEEP_METRIC_LOSSES[name](generator=torch.Generator().manual_seed(4))
    assert float(loss(x, labels).detach()) == first[0]


@pytest.mark.parametrize("name", sorted(set(NAMES) - CENTRE_LOSSES))
def test_miner_tuples_compose(name):
    x, labels = unit_batch(16)
    loss = DEEP_METRIC_LOSSES[name]()
    everything = lmu.get_all_pairs_indices(labels)  # all pairs as a tuple == no tuple
    plain = x.detach()
    assert float(DEEP_METRIC_LOSSES[name]()(plain, labels, everything)) == pytest.approx(float(loss(plain, labels)))
    for miner in (MultiSimilarityMiner(epsilon=0.1), BatchEasyHardMiner()):
        value, grad = value_and_grad(DEEP_METRIC_LOSSES[name](), x, labels, indices_tuple=miner(x, labels))
        assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", sorted(CENTRE_LOSSES))
def test_centre_losses_refuse_miner_tuples(name):
    x, labels = unit_batch(8)
    with pytest.raises(ValueError, match="indices_tuple"):
        DEEP_METRIC_LOSSES[name]()(x, labels, lmu.get_all_pairs_indices(labels))


@pytest.mark.parametrize("name", NAMES)
def test_reducers_compose(name):
    x, labels = unit_batch(16)
    x = x.detach()
    kwargs = {"seed": 1} if name in SEEDED else {}
    default = float(DEEP_METRIC_LOSSES[name](**kwargs)(x, labels))
    raw = DEEP_METRIC_LOSSES[name](reducer=DoNothingReducer(), **kwargs)(x, labels)["loss"]
    losses = raw["losses"]
    if raw["reduction_type"] == "already_reduced":
        assert float(losses) == pytest.approx(default)
        return
    assert float(losses.mean()) == pytest.approx(default, rel=1e-6)  # the default reducer is the mean
    summed = float(DEEP_METRIC_LOSSES[name](reducer=SumReducer(), **kwargs)(x, labels))
    assert summed == pytest.approx(float(losses.sum()), rel=1e-6)


FORWARD_FILES = sorted(p for p in (ROOT / "baselines" / "deep_metric").glob("*.py") if p.name != "batch_kmeans.py")


@pytest.mark.parametrize("path", FORWARD_FILES, ids=lambda p: p.name)
def test_no_python_loop_in_the_forward(path):
    """Loops are allowed only in constructors and in batch_kmeans.py (over centres and Lloyd steps)."""
    tree = ast.parse(path.read_text())
    loops = (ast.For, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.AsyncFor)
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef) and func.name != "__init__":
            found = [type(node).__name__ for node in ast.walk(func) if isinstance(node, loops)]
            assert not found, f"{path.name}:{func.name} has {found}"


def test_forward_files_cover_every_loss():
    files = {Path(inspect.getfile(cls)).name for cls in DEEP_METRIC_LOSSES.values()}
    assert files <= {p.name for p in FORWARD_FILES}
    assert len(files) == len(DEEP_METRIC_LOSSES)  # one loss per file


@pytest.mark.parametrize("name", NAMES)
def test_every_loss_has_a_digits_baseline_config(name):
    config = pytest.importorskip("isl.config")
    cfg = config.load_config(ROOT / "configs" / "baselines" / f"{name}.yaml")
    assert cfg.baseline.loss == name and cfg.data.name == "digits"
    assert cfg.experiment == f"digits_baseline_{name}"
    loss = DEEP_METRIC_LOSSES[name](**cfg.baseline.loss_kwargs)
    x, labels = unit_batch(16)
    assert torch.isfinite(loss(x, labels))


def test_package_exports():
    for cls in DEEP_METRIC_LOSSES.values():
        assert getattr(family, cls.__name__) is cls
