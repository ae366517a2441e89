"""CIFAR-10/100(-20), STL-10 and SVHN read back through build_dataset from tiny files in the real formats."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.stl10
import torchvision.datasets.svhn
from torch.utils.data import DataLoader, Subset

from fake_datasets import write_all_fake
from isl.data import (DATASETS, DatasetCorruptedError, DatasetNotFoundError, MultiView, build_dataset,
                      build_transform, dataset_targets)

# (data set name, split, key of the fake data set, fake split(s) concatenated, label field)
CASES = [
    ("cifar10", "train", "cifar10", ["train"], "labels"),
    ("cifar10", "test", "cifar10", ["test"], "labels"),
    ("cifar100", "train", "cifar100", ["train"], "labels"),
    ("cifar100", "test", "cifar100", ["test"], "labels"),
    ("cifar100_20", "train", "cifar100", ["train"], "coarse_labels"),
    ("cifar100_20", "test", "cifar100", ["test"], "coarse_labels"),
    ("stl10", "train", "stl10", ["train"], "labels"),
    ("stl10", "test", "stl10", ["test"], "labels"),
    ("stl10", "unlabeled", "stl10", ["unlabeled"], "labels"),
    ("stl10", "train+unlabeled", "stl10", ["train", "unlabeled"], "labels"),
    ("svhn", "train", "svhn", ["train"], "labels"),
    ("svhn", "test", "svhn", ["test"], "labels"),
]


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, write_all_fake(root)


def _expected(fakes, key, parts, field):
    splits = [fakes[key][p] for p in parts]
    return np.concatenate([s.images for s in splits]), np.concatenate([getattr(s, field) for s in splits])


@pytest.mark.parametrize("name,split,key,parts,field", CASES)
def test_items_images_targets_indices_survive(fake_root, name, split, key, parts, field):
    root, fakes = fake_root
    images, labels = _expected(fakes, key, parts, field)
    ds = build_dataset(name, split, root, verify_checksums=False)
    assert len(ds) == len(labels)
    assert np.asarray(ds[0][0])[0, 0].tolist() == images[0, 0, 0].tolist()   # first pixel of the first image
    for i in range(len(ds)):
        image, target, index = ds[i]
        assert index == i and isinstance(target, int) and target == labels[i]
        np.testing.assert_array_equal(np.asarray(image), images[i])
    targets = dataset_targets(ds)
    assert targets.dtype == torch.int64
    assert targets.tolist() == labels.tolist()
    assert targets.max() < DATASETS[name].num_classes


def test_svhn_digit_zero_is_label_zero(fake_root):
    root, fakes = fake_root
    ds = build_dataset("svhn", "train", root, verify_checksums=False)
    assert fakes["svhn"]["train"].labels[0] == 0 and ds[0][1] == 0    # stored as 10 on disk
    assert int(dataset_targets(ds).max()) <= 9


def test_cifar100_coarse_and_fine_agree(fake_root):
    root, _ = fake_root
    fine = build_dataset("cifar100", "train", root, verify_checksums=False)
    coarse = build_dataset("cifar100_20", "train", root, verify_checksums=False)
    assert len(fine.classes) == 100 and len(coarse.classes) == 20 and coarse.classes[3] == "coarse3"
    assert (dataset_targets(coarse) == dataset_targets(fine) % 20).all()   # the fake's fine -> coarse map


def test_dataset_targets_of_subset(fake_root):
    root, fakes = fake_root
    ds = build_dataset("cifar10", "train", root, verify_checksums=False)
    sub = Subset(ds, [4, 0, 2])
    assert dataset_targets(sub).tolist() == [int(fakes["cifar10"]["train"].labels[i]) for i in (4, 0, 2)]


@pytest.mark.parametrize("name,size", [("cifar10", 32), ("cifar100_20", 32), ("stl10", 96), ("svhn", 32)])
def test_transforms_give_normalised_tensors(fake_root, name, size):
    root, _ = fake_root
    split = "train"
    for train in (True, False):
        ds = build_dataset(name, split, root, transform=build_transform(name, train), verify_checksums=False)
        image, _, _ = ds[1]
        assert image.shape == (3, size, size) and image.dtype == torch.float32 and torch.isfinite(image).all()
    # the test transform is (pixel / 255 - mean) / std, computed here by hand
    raw = np.asarray(build_dataset(name, split, root, verify_checksums=False)[1][0]).astype(np.float64)
    info = DATASETS[name]
    expected = (raw / 255.0 - np.array(info.mean)) / np.array(info.std)          # H x W x 3
    torch.testing.assert_close(image, torch.from_numpy(expected.transpose(2, 0, 1)).float(), atol=1e-5, rtol=0)


def test_two_views_through_dataloader(fake_root):
    root, _ = fake_root
    ds = build_dataset("cifar10", "train", root, transform=MultiView(build_transform("cifar10", True), 2),
                       verify_checksums=False)
    images, targets, indices = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert images.shape == (4, 2, 3, 32, 32)
    assert indices.tolist() == [0, 1, 2, 3] and targets.shape == (4,)
    assert not torch.equal(images[:, 0], images[:, 1])          # two independent augmentations


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "cifar100_20", "stl10", "svhn"])
def test_missing_data_set_says_where_and_how(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as err:
        build_dataset(name, "train", tmp_path / "empty")
    msg = str(err.value)
    folder = (tmp_path / "empty" / DATASETS[name].folder).absolute()
    assert isinstance(err.value, FileNotFoundError)
    assert f"'{name}'" in msg and str(folder) in msg
    assert "data.download=true" in msg and "ISL_DATA_ROOT" in msg and "http" in msg


def test_data_root_from_environment(fake_root, monkeypatch):
    root, fakes = fake_root
    monkeypatch.setenv("ISL_DATA_ROOT", str(root))
    assert len(build_dataset("cifar10", "test", None, verify_checksums=False)) == len(fakes["cifar10"]["test"].labels)
    monkeypatch.setenv("ISL_DATA_ROOT", str(root / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        build_dataset("cifar10", "test", None)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "svhn"])
def test_md5_check_stays_on_by_default(fake_root, name):
    root, _ = fake_root
    with pytest.raises(DatasetCorruptedError, match="--set data.verify_checksums=false"):
        build_dataset(name, "train", root)


class _Fetched(Exception):
    pass


@pytest.mark.parametrize("name,module,function", [
    ("cifar10", torchvision.datasets.cifar, "download_and_extract_archive"),
    ("stl10", torchvision.datasets.stl10, "download_and_extract_archive"),
    ("svhn", torchvision.datasets.svhn, "download_url"),
])
def test_download_flag_reaches_torchvision(tmp_path, monkeypatch, name, module, function):
    def fake_fetch(url, *args, **kwargs):
        raise _Fetched(url)

    monkeypatch.setattr(module, function, fake_fetch)
    with pytest.raises(_Fetched, match="http"):
        build_dataset(name, "train", tmp_path, download=True)


def test_download_with_files_present_does_not_fetch(fake_root, monkeypatch):
    root, _ = fake_root

    def fail(*args, **kwargs):
        raise AssertionError("tried to download although the files exist")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fail)
    assert len(build_dataset("cifar10", "train", root, download=True, verify_checksums=False)) > 0


def test_bad_names_raise(fake_root):
    root, _ = fake_root
    with pytest.raises(ValueError, match="cifar10"):
        build_dataset("cifar11", "train", root)
    with pytest.raises(ValueError, match="unlabeled"):
        build_dataset("stl10", "extra", root)
    with pytest.raises(TypeError, match="targets"):
        dataset_targets(torch.utils.data.TensorDataset(torch.zeros(3)))
