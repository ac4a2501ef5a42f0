"""`--limit N` subsets: N rows spread evenly over a split, representative of the whole split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaeprior.fast.data import DeviceData, split_tensor, spread_rows


def test_spread_rows_distinct_images_every_copy_no_prefix():
    n_img, copies = 10_000, 10
    rows = spread_rows(n_img * copies, 1000, copies)
    images, copy = rows % n_img, rows // n_img
    assert len(np.unique(images)) == 1000  # distinct images
    assert np.all(np.diff(images) == 10)  # evenly spread: 0, 10, 20, ..., 9990
    assert np.bincount(copy, minlength=copies).tolist() == [100] * copies  # every binarization
    assert not np.array_equal(rows, np.arange(1000))  # never the first rows of one copy
    # more rows than images: distinct (image, copy) pairs, still spread
    rows = spread_rows(n_img * copies, 25_000, copies)
    assert len(np.unique(rows)) == 25_000 and rows.max() < n_img * copies
    # no limit / limit >= rows: all rows in order
    np.testing.assert_array_equal(spread_rows(50, None), np.arange(50))
    np.testing.assert_array_equal(spread_rows(50, 80), np.arange(50))
    with pytest.raises(ValueError, match="--limit must be >= 1"):
        spread_rows(50, 0)


def test_split_tensor_uses_the_spread_subset():
    g = torch.Generator().manual_seed(0)
    test = (torch.rand(10 * 30, 784, generator=g) < 0.3).to(torch.uint8)  # 30 images x 10
    train = torch.rand(40, 784, generator=g)
    data = DeviceData(train, None, test, dynamic=True, test_copies=10)
    sub = split_tensor(data, "test", limit=6)
    expected = test[torch.as_tensor(spread_rows(300, 6, 10))]
    assert torch.equal(sub, expected) and sub.dtype == torch.uint8
    assert torch.equal(split_tensor(data, "test"), test)
    full_train = split_tensor(data, "train", seed=2)
    rows = spread_rows(40, 10, jitter=True)
    assert torch.equal(split_tensor(data, "train", 2, 10), full_train[rows])
    assert len(np.unique(rows)) == 10 and np.all(rows // 4 == np.arange(10))  # one per stratum


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "static-mnist"])
def test_subset_density_matches_the_whole_split(data_dir, name):
    """Mean pixel density of 1000 spread test images within 2 % of the whole test set's."""
    from vaeprior.fast.data import load_device_data

    if not (data_dir / name).is_dir():
        pytest.skip(f"{data_dir / name} is missing: place {name} under $VAEPRIOR_DATA")
    data = load_device_data(name, data_dir, "cpu")
    whole = data.test.float().mean().item()
    sub = split_tensor(data, "test", limit=1000).float().mean().item()
    first = data.test[:1000].float().mean().item()
    assert abs(sub / whole - 1) < 0.02, (name, sub, whole, first)
    train_whole = split_tensor(data, "train", 0).float().mean().item()
    train_sub = split_tensor(data, "train", 0, 1000).float().mean().item()
    assert abs(train_sub / train_whole - 1) < 0.02


def test_subset_bias_compares_the_first_rows_with_the_spread_ones():
    from vaeprior.bench.subset_bias import subsets

    test = torch.arange(10 * 30).unsqueeze(1).expand(-1, 3)  # row i holds i: 30 images x 10
    got = subsets(test, copies=10, limit=6, full=True)
    assert list(got) == ["first 6", "spread 6", "full test set"]
    assert got["first 6"][:, 0].tolist() == [0, 1, 2, 3, 4, 5]  # one copy's first images
    assert got["spread 6"][:, 0].tolist() == spread_rows(300, 6, 10).tolist()
    assert got["spread 6"][:, 0].tolist() == [0, 35, 70, 105, 140, 175]  # images 0,5,..,25
    assert torch.equal(got["full test set"], test)
    assert list(subsets(test, 10, 6, full=False)) == ["first 6", "spread 6"]
