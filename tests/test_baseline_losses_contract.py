"""Every registered loss (timm-style, one parametrised test over the registry): finite values and gradients on
ordinary and degenerate batches, and clear errors on bad input."""
from __future__ import annotations

import pytest
import torch

from baselines.registry import LOSSES, PAPER_LOSSES, build_loss

NUM_CLASSES, DIM = 6, 4


def make(name):
    return build_loss(name, num_classes=NUM_CLASSES, embedding_size=DIM)


def embeddings(rows):
    g = torch.Generator().manual_seed(0)
    return torch.randn(rows, DIM, generator=g)


DEGENERATE = {
    "ordinary": lambda: (embeddings(8), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])),
    "one_class": lambda: (embeddings(6), torch.zeros(6, dtype=torch.long)),
    "no_positive_pair": lambda: (embeddings(6), torch.arange(6)),
    "all_duplicates": lambda: (embeddings(1).repeat(6, 1), torch.tensor([0, 0, 0, 1, 1, 1])),
    "duplicate_pairs": lambda: (embeddings(3).repeat_interleave(2, dim=0), torch.tensor([0, 0, 1, 1, 2, 2])),
    "duplicates_across_classes": lambda: (embeddings(3).repeat(2, 1), torch.tensor([0, 0, 0, 1, 1, 1])),
    "two_samples": lambda: (embeddings(2), torch.tensor([0, 1])),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_value_and_gradient(name, case):
    x, y = DEGENERATE[case]()
    x = x.clone().requires_grad_(True)
    loss_fn = make(name)
    value = loss_fn(x, y)
    assert value.dim() == 0 and torch.isfinite(value), f"{name} on {case}: {value}"
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), f"{name} on {case}: non-finite gradient"
    for pname, p in loss_fn.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f"{name} on {case}: {pname} gradient"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_reaches_every_sample_on_an_ordinary_batch(name):
    x, y = DEGENERATE["ordinary"]()
    x = (x * 0.5).requires_grad_(True)
    make(name)(x, y).backward()
    assert x.grad.abs().sum() > 0, f"{name}: no gradient at all"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bad_input_gives_clear_errors(name):
    loss_fn = make(name)
    x = embeddings(6)
    with pytest.raises(ValueError, match="shape"):
        loss_fn(x, torch.zeros(6, 1, dtype=torch.long))  # B x 1 instead of B
    with pytest.raises(ValueError, match="shape"):
        loss_fn(x, torch.zeros(5, dtype=torch.long))  # wrong length
    with pytest.raises(TypeError, match="integer"):
        loss_fn(x, torch.zeros(6))  # float labels
    with pytest.raises(TypeError, match="integer"):
        loss_fn(x, torch.zeros(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least 2"):
        loss_fn(x[:1], torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="B x d"):
        loss_fn(x.unsqueeze(0), torch.zeros(6, dtype=torch.long))
    with pytest.raises(TypeError, match="floating point"):
        loss_fn(x.long(), torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="labels are required"):
        loss_fn(x)


@pytest.mark.parametrize("name", ["proxy_nca", "proxy_nca_pp", "proxy_anchor", "hierarchical_triplet"])
def test_labels_outside_num_classes_are_rejected(name):
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        make(name)(embeddings(4), torch.tensor([0, 1, 2, 6]))


def test_proxy_losses_need_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        build_loss("proxy_anchor", embedding_size=DIM)


def test_unknown_loss_lists_valid_names_and_the_closest():
    with pytest.raises(KeyError) as info:
        build_loss("tripletloss")
    message = str(info.value)
    assert "'triplet'" in message.split("Did you mean")[1].split("?")[0]
    for valid in LOSSES:
        assert valid in message


def test_registry_holds_the_20_document_losses_and_merges_deep_metric():
    from baselines import registry
    assert len(PAPER_LOSSES) == 20
    assert set(PAPER_LOSSES) <= set(LOSSES)
    assert set(registry.DEEP_METRIC_LOSSES) <= set(LOSSES)
    assert len(LOSSES) == len(PAPER_LOSSES) + len(registry.DEEP_METRIC_LOSSES)
    with pytest.raises(ValueError, match="defined twice"):
        registry.merge_registries({"a": int, "b": int}, {"b": float})


@pytest.mark.parametrize("name", sorted(PAPER_LOSSES))
def test_state_dict_round_trip(name):
    """Losses with state (proxies, the class tree) save and load through state_dict, weights_only."""
    import io
    loss_fn = make(name)
    x, y = DEGENERATE["ordinary"]()
    if hasattr(loss_fn, "fit_tree"):
        loss_fn.fit_tree(x, y)
    buffer = io.BytesIO()
    torch.save(loss_fn.state_dict(), buffer)
    buffer.seek(0)
    fresh = make(name)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh(x, y).item() == pytest.approx(loss_fn(x, y).item())
