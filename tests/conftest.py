import copy
import functools
import os
import sys
import warnings

import pytest
import torch

# pytest runs with --import-mode=importlib (test files in different folders share basenames), so
# the shared helper modules are found through sys.path: tests/ (helpers, pipelines, op cases) and
# benchmarks/ (experiments that a test runs small).
_HERE = os.path.dirname(__file__)
for _folder in (os.path.join(_HERE, "..", "benchmarks"), _HERE):
    sys.path.insert(0, os.path.abspath(_folder))
os.environ.setdefault("NEUTRONQ_PROGRESS", "0")
warnings.filterwarnings("ignore", message=".*is an Enum subclass.*")


# Tests that share an expensive session fixture run in one pytest-xdist worker, so the fixture is
# built once (scripts/test.sh runs the suite with --dist loadgroup). A test that names its group
# itself (the EfficientNet-Lite0 accuracy tests, one group per weight scheme, so the two slowest
# chains run side by side) keeps it.
_GROUPS = {
    "efficientnet": ("efficientnet_lite0", "benchmark_images", "efficientnet_int8"),
    "cli": ("run", "shot"),  # the command's one run on a small model (tests/report/report_helpers.py)
}

if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: the workers share the cores
    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        names = set(getattr(item, "fixturenames", ()))
        for group, fixtures in _GROUPS.items():
            if names & set(fixtures):
                item.add_marker(pytest.mark.xdist_group(group))
                break


def pytest_collection_finish(session):
    """Refuse a run whose groups pytest-xdist did not apply: every worker would then build every
    shared fixture (EfficientNet-Lite0's presets twice over), as pytest 9.2 with xdist 3.8 did."""
    if not session.config.getoption("loadgroup", default=False):
        return
    lost = [item.nodeid for item in session.items
            if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid]
    if lost:
        message = (f"pytest-xdist did not apply its groups ({len(lost)} tests, e.g. {lost[0]}): pytest "
                   f"{pytest.__version__} with this pytest-xdist ignores xdist_group. Install the versions "
                   "pyproject.toml's test extra allows (bash scripts/setup.sh does).")
        print(message, file=sys.__stderr__, flush=True)  # xdist shows a worker's error only as its crash
        raise pytest.UsageError(message)


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


class EfficientNetInt8:
    """EfficientNet-Lite0 quantized with NXP's default scheme (``NeutronQuantizer(spec,
    per_channel=...)``, non-strict export, the 100 calibration crops at batch 1) and lowered for
    imxrt700, each computed once per session and per weight scheme. Tests must not change what
    they get: ``pte()`` gives the serialized program (``to_executorch`` changes the edge manager
    it is called on, so it runs on a copy)."""

    def __init__(self, model, calibration):
        self.model, self.calibration = model, calibration
        self.example = (calibration[:1],)

    @functools.cache
    def quantized(self, per_channel: bool):
        from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize

        quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
        return calibrate_and_quantize(torch.export.export(self.model, self.example),
                                      [self.calibration[i : i + 1] for i in range(len(self.calibration))],
                                      quantizer)

    @functools.cache
    def lowered(self, per_channel: bool):
        """(EdgeProgramManager, NeutronPartitioner) of the quantized model."""
        from pipelines import lower

        return lower(self.quantized(per_channel), self.example)

    @functools.cache
    def pte(self, per_channel: bool) -> bytes:
        edge, _ = self.lowered(per_channel)
        return copy.deepcopy(edge).to_executorch().buffer


@pytest.fixture(scope="session")
def efficientnet_int8(efficientnet_lite0, benchmark_images):
    """The shared quantized and lowered EfficientNet-Lite0 (``EfficientNetInt8``)."""
    return EfficientNetInt8(efficientnet_lite0, benchmark_images[0])
