"""Progress bars for long work (calibration, training, evaluation), quiet when not a terminal."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(iterable, desc: str, unit: str = "it", total=None, **kwargs):
    """A tqdm bar over ``iterable``; off when ``NEUTRONQ_PROGRESS=0`` or stderr is not a tty."""
    enabled = os.environ.get("NEUTRONQ_PROGRESS", "auto")
    disable = enabled == "0" or (enabled == "auto" and not sys.stderr.isatty())
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=disable, leave=False, **kwargs)
