import os
import sys
import warnings

import pytest
import torch

# pytest runs with --import-mode=importlib (test files in different folders share basenames), so
# the shared helper modules are found through sys.path: tests/ and its helper folders.
_HERE = os.path.dirname(__file__)
for _folder in ("", "lowering", "runtime"):
    sys.path.insert(0, os.path.join(_HERE, _folder))
os.environ.setdefault("NEUTRONQ_PROGRESS", "0")
warnings.filterwarnings("ignore", message=".*is an Enum subclass.*")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=[False, True], ids=["nonstrict", "strict"])
def strict(request):
    """Every test that takes it runs for both export modes."""
    return request.param


@pytest.fixture(scope="session")
def efficientnet_lite0():
    """EfficientNet-Lite0 with its ImageNet weights (pip), eval mode."""
    from neutronq.data.models import efficientnet_lite0

    return efficientnet_lite0()


@pytest.fixture(scope="session")
def benchmark_images():
    """(calibration crops [100], evaluation crops [500]) of the benchmark image set."""
    from neutronq.data.photos import benchmark_split

    return benchmark_split()
