"""Run the real ``neutronq`` command once on a small model and share what it wrote.

Imported as ``report.report_helpers`` (``tests/`` is on ``sys.path``) by tests/app/test_cli.py and the
tests in tests/report/, so the command runs once per session.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# conv(3->8) + BN + relu6 -> depthwise conv -> sin (no quantization rule: stays on the CPU)
# -> pool -> fc(8->10): two NPU partitions around a CPU op.
SMALL_MODEL = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.bn(self.conv(x)))
        x = torch.sin(self.dw(x))
        x = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)

def make_net():
    torch.manual_seed(0)
    return Net()

class Unexportable(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent Python control flow: torch.export cannot trace it
            return x * 2
        return x

def make_unexportable():
    return Unexportable()

def make_string():
    return "not a model"
'''
# MACs of SMALL_MODEL on [1, 3, 16, 16]: conv 16*16*8*(3*3*3) + depthwise 16*16*8*(3*3) + fc 10*8
SMALL_MODEL_MACS = 16 * 16 * 8 * 27 + 16 * 16 * 8 * 9 + 10 * 8
SMALL_MODEL_SHAPE = "1,3,16,16"


@dataclass(frozen=True)
class CliRun:
    workdir: Path
    out: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict:
        return json.loads((self.out / "report.json").read_text())


def neutronq(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``python -m neutronq ARGS`` in ``cwd``, as a user would."""
    env = dict(os.environ, NEUTRONQ_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "neutronq", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_small_model(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "small_models.py"
    path.write_text(SMALL_MODEL)
    return path


@functools.lru_cache(maxsize=None)
def small_model_run() -> CliRun:
    """``neutronq quantize small_models.py:make_net`` with a .npy calibration set, --tflite and
    --error-budget."""
    workdir = Path(tempfile.mkdtemp(prefix="neutronq_cli_"))
    write_small_model(workdir)
    rng = np.random.default_rng(0)
    np.save(workdir / "calib.npy", rng.normal(size=(24, 3, 16, 16)).astype(np.float32))
    out = workdir / "out"
    proc = neutronq("quantize", "small_models.py:make_net", "--input-shape", SMALL_MODEL_SHAPE,
                    "--calibration", "calib.npy", "--tflite", "--error-budget", "--eval-count", "16",
                    "--out", str(out),
                    cwd=workdir)
    return CliRun(workdir, out, proc.returncode, proc.stdout, proc.stderr)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_HINT = ("Debian's chromium is missing: install it with `sudo apt-get install -y chromium` "
                 "(scripts/setup.sh does it when run as root)")


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2600) -> Path:
    """Render ``html`` in headless Chromium into ``png`` (``width`` x ``height`` CSS pixels, scale 1)."""
    assert CHROMIUM.exists(), CHROMIUM_HINT
    with tempfile.TemporaryDirectory(prefix="neutronq_chromium_") as profile:
        proc = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
             "--force-device-scale-factor=1", f"--window-size={width},{height}",
             f"--screenshot={png}", html.resolve().as_uri()],
            capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and png.exists(), f"chromium failed:\n{proc.stderr[-2000:]}"
    return png
