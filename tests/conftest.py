import os
import sys
import warnings

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("NEUTRONQ_PROGRESS", "0")
warnings.filterwarnings("ignore", message=".*is an Enum subclass.*")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=[False, True], ids=["nonstrict", "strict"])
def strict(request):
    """Every test that takes it runs for both export modes."""
    return request.param
