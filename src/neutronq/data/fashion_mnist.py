"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files, gzip).

``apt-get install -y dataset-fashion-mnist`` puts the four files of the full 60k / 10k set in
``/usr/share/datasets/fashion-mnist/``; ``scripts/setup.sh`` installs it. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Optional

import torch

__all__ = [
    "DEFAULT_DIR", "CLASSES", "load_fashion_mnist", "read_idx",
    "fashion_cnn", "train_epoch", "accuracy",
]

DEFAULT_DIR = Path(os.environ.get("NEUTRONQ_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# the usual normalisation of Fashion-MNIST pixels (mean, std of the training set)
MEAN, STD = 0.2860, 0.3530


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (unsigned bytes) as a uint8 tensor of its stated shape."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {data[:4].hex()}).")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    expected = 1
    for d in shape:
        expected *= d
    if len(body) != expected:
        raise ValueError(f"{path}: header says {shape} ({expected} bytes) but holds {len(body)} bytes.")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def load_fashion_mnist(split: str = "train", limit: Optional[int] = None,
                       directory: Optional[Path] = None, normalize: bool = True):
    """(images, labels) of a split: images float (N, 1, 28, 28), normalised unless told not to;
    labels int64 (N,). ``limit`` keeps the first ``limit`` images."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    directory = Path(directory) if directory is not None else DEFAULT_DIR
    paths = [directory / name for name in _FILES[split]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found: {', '.join(missing)}. Install the Debian package: "
            "apt-get install -y dataset-fashion-mnist (scripts/setup.sh does it), or set "
            "NEUTRONQ_FASHION_MNIST_DIR to a folder holding the four IDX .gz files."
        )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.float().div_(255.0).unsqueeze(1)
    if normalize:
        x = (x - MEAN) / STD
    return x, labels.long()


# --------------------------------------------------------------------------------------------
# a small CNN for it, and the loops the QAT tests and benchmark share
# --------------------------------------------------------------------------------------------
def fashion_cnn(width: int = 32) -> torch.nn.Module:
    """A ~13k-parameter CNN with bias-less conv + BN units and depthwise-separable blocks."""
    nn = torch.nn

    def unit(cin, cout, k, groups=1, act=nn.ReLU):
        return [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout), act()]

    w = width
    return nn.Sequential(
        *unit(1, w, 3), nn.MaxPool2d(2),                                  # 14 x 14
        *unit(w, w, 3, groups=w, act=nn.ReLU6), *unit(w, 2 * w, 1), nn.MaxPool2d(2),  # 7 x 7
        *unit(2 * w, 2 * w, 3, groups=2 * w), *unit(2 * w, 4 * w, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 10),
    )


def train_epoch(model, images: torch.Tensor, labels: torch.Tensor, optimizer,
                batch_size: int = 64, generator: Optional[torch.Generator] = None) -> float:
    """One pass over (images, labels) in shuffled batches; returns the mean loss. ``model`` is
    an eager module (put in train mode here) or a prepared graph already moved to train."""
    if isinstance(model, torch.nn.Module) and not isinstance(model, torch.fx.GraphModule):
        model.train()
    order = torch.randperm(len(images), generator=generator)
    total, count = 0.0, 0
    for start in range(0, len(images), batch_size):
        idx = order[start : start + batch_size]
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent. Eager modules are put in eval mode; graphs are run as they are."""
    if isinstance(model, torch.nn.Module) and not isinstance(model, torch.fx.GraphModule):
        model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        out = model(images[start : start + batch_size])
        correct += int((out.argmax(1) == labels[start : start + batch_size]).sum())
    return 100.0 * correct / len(images)
