"""Files shipped inside installed pip packages, found without importing the package (some
import heavy or unneeded dependencies at import time)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["package_file"]


def package_file(package: str, relative: str, install: str) -> Path:
    """``relative`` inside the installed top-level ``package``; ``FileNotFoundError`` naming the
    ``install`` command when the package or the file is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"The pip package that provides {package!r} is not installed: {install}")
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{relative} is missing from the installed {package!r} package; reinstall it: {install}")
