"""The embedded digits set: real scikit-learn data, a fixed stratified split, (image, target, index) items."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader

from isl.data import DATASETS, build_dataset, dataset_targets, num_classes


@pytest.fixture(scope="module")
def raw():
    bunch = load_digits()
    return bunch.images, bunch.target


def test_default_split_sizes_disjoint_and_complete():
    train, test = build_dataset("digits", "train"), build_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    a, b = set(train.source_indices.tolist()), set(test.source_indices.tolist())
    assert not a & b and a | b == set(range(1797))


def test_split_is_stratified(raw):
    _, labels = raw
    test = build_dataset("digits", "test", test_fraction=0.25, split_seed=3)
    test_labels = labels[test.source_indices.numpy()]
    for c in range(10):                          # each class keeps its share, up to rounding
        share = 0.25 * np.sum(labels == c)
        assert abs(np.sum(test_labels == c) - share) <= 1.0


def test_split_is_fixed_by_seed():
    first = build_dataset("digits", "train", split_seed=7).source_indices
    again = build_dataset("digits", "train", split_seed=7).source_indices
    other = build_dataset("digits", "train", split_seed=8).source_indices
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_items_are_the_real_pixels_and_labels(raw):
    images, labels = raw
    ds = build_dataset("digits", "test")
    for i in range(0, len(ds), 37):
        image, target, index = ds[i]
        src = int(ds.source_indices[i])
        assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and index == i
        assert target == labels[src]
        np.testing.assert_allclose(image[0].numpy() * 16.0, images[src], atol=1e-5)
    assert dataset_targets(ds).tolist() == labels[ds.source_indices.numpy()].tolist()


def test_all_split_is_load_digits_order(raw):
    images, labels = raw
    ds = build_dataset("digits", "all")
    assert len(ds) == 1797 and dataset_targets(ds).tolist() == labels.tolist()
    assert float(ds[5][0][0, 3, 4]) * 16 == pytest.approx(images[5, 3, 4])


def test_info_matches_the_data(raw):
    images, _ = raw
    info = DATASETS["digits"]
    scaled = images / 16.0
    assert info.mean[0] == pytest.approx(scaled.mean(), abs=1e-3)
    assert info.std[0] == pytest.approx(scaled.std(), abs=1e-3)
    assert (info.num_classes, info.image_size, info.in_channels) == (10, 8, 1) == (num_classes("digits"), 8, 1)


def test_dataloader_batches():
    ds = build_dataset("digits", "train")
    images, targets, indices = next(iter(DataLoader(ds, batch_size=128, shuffle=False)))
    assert images.shape == (128, 1, 8, 8) and targets.dtype == torch.int64
    assert indices.tolist() == list(range(128))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="train"):
        build_dataset("digits", "validation")
    with pytest.raises(ValueError, match="test_fraction"):
        build_dataset("digits", "train", test_fraction=1.5)
