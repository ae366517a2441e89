"""Fashion-MNIST through torchvision's reader on tiny IDX files in the real format; preparing a data root."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fake_datasets import write_fake_idx
from isl.data import DATASETS, DatasetCorruptedError, DatasetNotFoundError, build_dataset, dataset_targets
from isl.data import fashion_mnist as fm

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_package(monkeypatch, tmp_path):
    """Pretend the Debian package is not installed (or installed at a folder of the test's choosing)."""
    monkeypatch.setattr(fm, "PACKAGE_DIRS", (str(tmp_path / "no-package"),))
    return tmp_path / "no-package"


def test_items_are_tensors_targets_indices(tmp_path, no_package):
    fakes = write_fake_idx(fm.raw_folder(tmp_path))
    for split in ("train", "test"):
        ds = build_dataset("fashion_mnist", split, tmp_path, verify_checksums=False)
        images, labels = fakes[split]
        assert len(ds) == len(labels)
        image, target, index = ds[3]
        assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and index == 3
        torch.testing.assert_close(image[0], torch.from_numpy(images[3]).float() / 255)
        assert target == labels[3]
        assert dataset_targets(ds).tolist() == labels.tolist()


def test_resize_at_load(tmp_path, no_package):
    write_fake_idx(fm.raw_folder(tmp_path))
    ds = build_dataset("fashion_mnist", "train", tmp_path, verify_checksums=False, image_size=16)
    image = ds[0][0]
    assert image.shape == (1, 16, 16) and 0 <= float(image.min()) and float(image.max()) <= 1


def test_md5_check_on_by_default(tmp_path, no_package):
    write_fake_idx(fm.raw_folder(tmp_path))
    with pytest.raises(DatasetCorruptedError, match="verify_checksums=false"):
        build_dataset("fashion_mnist", "train", tmp_path)


def test_missing_says_where_and_how(tmp_path, no_package):
    with pytest.raises(DatasetNotFoundError) as err:
        build_dataset("fashion_mnist", "train", tmp_path / "empty")
    msg = str(err.value)
    assert str((tmp_path / "empty" / "FashionMNIST" / "raw").absolute()) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data.download=true" in msg
    assert "tools/prepare_data.py" in msg


def test_unpacked_from_the_package_folder_on_first_use(tmp_path, monkeypatch):
    package = tmp_path / "usr-share"
    fakes = write_fake_idx(package, gzipped=True)
    monkeypatch.setattr(fm, "PACKAGE_DIRS", (str(package),))
    ds = build_dataset("fashion_mnist", "test", tmp_path / "data", verify_checksums=False)
    assert sorted(p.name for p in fm.raw_folder(tmp_path / "data").iterdir()) == sorted(fm.RAW_MD5)
    assert dataset_targets(ds).tolist() == fakes["test"][1].tolist()


def test_prepare_tool(tmp_path, no_package):
    source = tmp_path / "src"
    write_fake_idx(source, gzipped=True)
    cmd = [sys.executable, str(REPO / "tools" / "prepare_data.py"), "fashion_mnist", "--from", str(source),
           "--data-root", str(tmp_path / "root")]
    bad = subprocess.run(cmd, capture_output=True, text=True)            # fake files fail the md5 check
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "md5" in bad.stderr
    ok = subprocess.run(cmd + ["--no-verify"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in fm.raw_folder(tmp_path / "root").iterdir()) == sorted(fm.RAW_MD5)
    missing = subprocess.run(cmd[:-4] + ["--from", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "apt-get install" in missing.stderr


REAL = fm.find_source()


@pytest.mark.skipif(REAL is None, reason="Debian's dataset-fashion-mnist is not installed")
def test_real_files_statistics(tmp_path):
    """The real data: 60k + 10k images, balanced classes, the mean / std recorded in the registry."""
    train = build_dataset("fashion_mnist", "train", tmp_path)
    test = build_dataset("fashion_mnist", "test", tmp_path)
    assert len(train) == 60_000 and len(test) == 10_000
    assert torch.bincount(dataset_targets(train)).tolist() == [6000] * 10
    info = DATASETS["fashion_mnist"]
    assert float(train.images.mean()) == pytest.approx(info.mean[0], abs=1e-4)
    assert float(train.images.std()) == pytest.approx(info.std[0], abs=1e-4)
