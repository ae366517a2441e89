"""extract_features (isl.eval.features): rows placed by dataset index under a shuffled order with a short
last batch, eval mode during extraction and the previous mode restored."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from isl.eval.features import extract_features


class IndexedSet(Dataset):
    """Item i = (x_i, target_i, i), as the project's dataset wrappers return."""

    def __init__(self, n=23, d=5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d, generator=g)
        self.y = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i]), i


def make_model(d=5, out=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 8), nn.Dropout(0.5), nn.Linear(8, out))  # dropout: eval mode matters


def shuffled_loader(ds, batch_size=5, drop_last=False):
    return DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(3))


def test_rows_placed_by_dataset_index():
    ds, model = IndexedSet(), make_model()
    loader = shuffled_loader(ds)  # 23 items in batches of 5: the last batch has 3
    order = torch.cat([idx for _, _, idx in shuffled_loader(ds)])
    assert not torch.equal(order, torch.arange(len(ds)))  # the order really is shuffled
    model.train()
    feats, labels, indices = extract_features(model, loader, "cpu")
    model.eval()
    with torch.no_grad():
        expected = torch.stack([model(ds.x[i:i + 1])[0] for i in range(len(ds))])  # one sample at a time
    assert feats.dtype == torch.float32 and feats.device.type == "cpu" and feats.shape == (23, 4)
    assert torch.allclose(feats, expected, atol=1e-6)
    assert labels.dtype == torch.int64 and torch.equal(labels, ds.y)
    assert indices.dtype == torch.int64 and torch.equal(indices, torch.arange(23))
    # what the reference code did (rows by running batch offset) would put rows in the loader's order
    assert not torch.allclose(feats, expected[order], atol=1e-6)


@pytest.mark.parametrize("was_training", [True, False])
def test_previous_mode_restored_and_no_grad(was_training):
    ds, model = IndexedSet(n=8), make_model()
    model.train(was_training)
    feats, _, _ = extract_features(model, DataLoader(ds, batch_size=3), torch.device("cpu"))
    assert model.training == was_training and all(m.training == was_training for m in model.modules())
    assert not feats.requires_grad
    again, _, _ = extract_features(model, DataLoader(ds, batch_size=8), "cpu")
    assert torch.allclose(feats, again, atol=1e-6)  # eval mode: dropout off, same whatever the batching


def test_missing_items_and_bad_batches_raise():
    ds, model = IndexedSet(), make_model()
    with pytest.raises(ValueError, match="never yielded"):
        extract_features(model, shuffled_loader(ds, drop_last=True), "cpu")
    pairs = DataLoader([(ds.x[i], 0) for i in range(4)], batch_size=2)
    with pytest.raises(ValueError, match=r"\(images, targets, indices\)"):
        extract_features(model, pairs, "cpu")
    with pytest.raises(ValueError, match="sized .dataset"):
        extract_features(model, [(ds.x[:2], torch.zeros(2), torch.arange(2))], "cpu")
    flat = nn.Flatten(0).train()  # returns a vector, not B x d
    with pytest.raises(ValueError, match="B x d"):
        extract_features(flat, DataLoader(ds, batch_size=4), "cpu")
    assert flat.training  # mode restored on the error path too
