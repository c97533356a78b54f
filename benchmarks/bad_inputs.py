"""About 100 bad inputs a careful user would try, and how neutronq answers each: clear, unclear
or wrong.

    .venv/bin/python benchmarks/bad_inputs.py [--only SUBSTR] [--json results.json] [--src DIR]

Each case runs in its own subprocess: the command as a user runs it (``python -m neutronq ...``,
one or more runs in a case folder), or a short Python snippet for the API, so an aborted process
counts and nothing leaks from one case into the next. ``--src`` measures another checkout's
``src`` (the figures before a change). Nothing here asserts; the verdicts are printed, one line
per case, then the counts:

  clear    the mistake is refused with one line naming the problem and the fix (exit status 2 on
           the command line, before the long work), or the input is handled correctly, with a
           note or a warning where something is dropped or numbers are lost;
  unclear  refused, but with a traceback, lines of library logging, the wrong exit status, a
           message that does not name the problem, only after the long work; or a mistake
           accepted without a word;
  wrong    a wrong or lossy result without a word, or an aborted process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
CLEAR, UNCLEAR, WRONG = "clear", "unclear", "wrong"

# ------------------------------------------------------------------------------------------
# What every case folder holds
MODELS = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):  # conv + BN + relu6 -> depthwise -> gelu (CPU) -> pool -> fc
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu6(self.bn(self.conv(x)))
        x = F.gelu(self.dw(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def make_net():
    torch.manual_seed(0)
    return Net()


class Tiny(nn.Module):
    def __init__(self, channels=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1)
        return self.fc(x.flatten(1))


def make_tiny():
    torch.manual_seed(1)
    return Tiny()


def make_tiny4():
    torch.manual_seed(1)
    return Tiny(4)


def make_gray():
    torch.manual_seed(1)
    return Tiny(1)


def make_raises():
    raise RuntimeError("weights file 'tiny_weights.bin' not found")


def make_needs_args(width):
    return Tiny()


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


def make_two_inputs():
    return TwoInputs()


class Unexportable(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent Python control flow
            return x * 2
        return x


def make_unexportable():
    return Unexportable()


def make_string():
    return "not a model"


class Bias(nn.Module):  # one conv whose bias dominates: per-tensor int32 bias overflow
    def __init__(self, zero_weights, bias):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            if zero_weights:
                self.conv.weight.zero_()
            self.conv.bias.fill_(bias)

    def forward(self, x):
        return self.conv(x)


def make_zero_weight_bias():
    torch.manual_seed(2)
    return Bias(True, 1.5)


def make_big_bias():
    torch.manual_seed(2)
    return Bias(False, 1e5)
'''

PRELUDE = '''
import json, sys, traceback, warnings
import torch
torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*Enum subclass.*")
sys.path.insert(0, ".")


def report(**kw):
    print("RESULT " + json.dumps(kw, default=str), flush=True)


def attempt(fn):
    """Run fn; report what it raised (type, message, the file that raised it) or returned,
    and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn()
        except Exception as e:
            tb = traceback.extract_tb(e.__traceback__)
            report(raised=type(e).__name__, message=str(e)[:3000], origin=tb[-1].filename if tb else "",
                   warnings=[str(w.message)[:600] for w in caught if "Enum" not in str(w.message)])
            return None
    report(raised=None, value=value, warnings=[str(w.message)[:600] for w in caught
                                              if "Enum" not in str(w.message)])
    return value
'''

# A small fully delegated program (conv -> relu -> pool -> fc on the NPU), built once.
BUILD_PTE = '''
import torch, numpy as np
from executorch.exir import to_edge_transform_and_lower
import executorch.kernels.quantized
from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize, load_program
from neutronq.neutron_partitioner import NeutronPartitioner
from neutronq.nxp_backend import generate_neutron_compile_spec
from bench_models import make_tiny
torch.manual_seed(0)
model = make_tiny().eval()
x = torch.rand(1, 3, 16, 16)
ep = torch.export.export(model, (x,))
q = calibrate_and_quantize(ep, [(torch.rand(1, 3, 16, 16),) for _ in range(8)],
                           NeutronQuantizer(NeutronTargetSpec("imxrt700")))
edge = to_edge_transform_and_lower(torch.export.export(q, (x,)),
                                   partitioner=[NeutronPartitioner(generate_neutron_compile_spec("imxrt700"))])
data = edge.to_executorch().buffer
open("tiny.pte", "wb").write(data)
torch.save(x, "tiny_input.pt")
torch.save(load_program(data)(x), "tiny_output.pt")
'''


def _write_fixtures(root: Path, src: Path) -> None:
    """Models, a calibration tensor, an image folder and a lowered program, shared by the cases."""
    import numpy as np
    from PIL import Image

    (root / "bench_models.py").write_text(MODELS)
    (root / "bad_import.py").write_text("import nonexistent_pkg_xyz\n\ndef make():\n    pass\n")
    (root / "syntax_err.py").write_text("def make(:\n    pass\n")
    rng = np.random.default_rng(0)
    np.save(root / "calib.npy", rng.normal(size=(24, 3, 16, 16)).astype(np.float32))
    images = root / "imgs"
    images.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(images / f"img{i}.jpg")
    proc = subprocess.run([sys.executable, "-c", PRELUDE + BUILD_PTE], cwd=root, env=_env(src),
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"building the small program failed:\n{proc.stderr[-3000:]}")


def _env(src: Path) -> dict:
    return dict(os.environ, NEUTRONQ_PROGRESS="0", PYTHONPATH=str(src), OMP_NUM_THREADS="1")


# ------------------------------------------------------------------------------------------
# Running and judging
@dataclass
class Run:
    rc: int
    out: str
    err: str
    seconds: float
    results: list = field(default_factory=list)  # RESULT lines of a snippet

    @property
    def result(self) -> dict:
        return self.results[-1] if self.results else {}


def _run(cmd: list[str], cwd: Path, src: Path, timeout: int = 600,
         interrupt_after: Optional[str] = None, interrupt_delay: float = 0.0) -> Run:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(src), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if interrupt_after is not None:  # SIGINT once stdout shows this text ("" : after the delay)
        out_lines = []
        if interrupt_after:
            for line in proc.stdout:
                out_lines.append(line)
                if interrupt_after in line:
                    break
        time.sleep(interrupt_delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
        out = "".join(out_lines) + out
    else:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += "\n[timed out]"
    results = [json.loads(l[len("RESULT "):]) for l in out.splitlines() if l.startswith("RESULT ")]
    return Run(proc.returncode, out, err, time.perf_counter() - start, results)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "neutronq", *args]


MODEL = ("bench_models.py:make_net", "--input-shape", "1,3,16,16")
TINY = ("bench_models.py:make_tiny", "--input-shape", "1,3,16,16")
# --force where the command has it (replacing an earlier run); dropped where it does not
FORCE = "@FORCE"
FAST = ("--eval-count", "8", "--sim-count", "2", "--layer-samples", "1", "--threads", "1")
_HARMLESS = ("Neutron converter", "neutron_converter")


def _noise(err: str) -> list[str]:
    return [l for l in err.splitlines() if l.strip() and not l.startswith(("neutronq: ", "[neutronq]"))
            and not any(h in l for h in _HARMLESS)]


def cli_error(r: Run, *needles: str, early: bool = True, accepted: str = UNCLEAR) -> tuple[str, str]:
    """A one-line error naming the problem (needles) and a fix, exit status 2, before the long work."""
    if r.rc < 0 or r.rc in (134, 139):
        return WRONG, f"process aborted ({r.rc})"
    if r.rc == 0:
        return accepted, "accepted without an error"
    lines = [l for l in r.err.splitlines() if l.startswith("neutronq: error:")]
    line = lines[-1] if lines else (r.err.strip().splitlines() or [""])[-1]
    problems = []
    if len(lines) != 1:
        problems.append(f"{len(lines)} error lines")
    if "Traceback" in r.err:
        problems.append("traceback")
    if r.rc != 2:
        problems.append(f"exit status {r.rc}")
    if lines and "Fix:" not in line:
        problems.append("no fix")
    missing = [n for n in needles if n.lower() not in line.lower()]
    if missing:
        problems.append(f"does not name {missing}")
    noise = _noise(r.err)
    if len(noise) > 2:
        problems.append(f"{len(noise)} lines of other output")
    if early and "[neutronq] quantize:" in r.out:
        problems.append("reported after quantizing")
    return (UNCLEAR if problems else CLEAR), "; ".join(problems) + (" | " if problems else "") + line[:200]


def argparse_error(r: Run, *needles: str) -> tuple[str, str]:
    """argparse's own refusal (usage line + one error line, exit 2) naming the option."""
    if r.rc == 0:
        return UNCLEAR, "accepted without an error"
    last = (r.err.strip().splitlines() or [""])[-1]
    ok = r.rc == 2 and "error:" in last and all(n.lower() in last.lower() for n in needles) \
        and "Traceback" not in r.err
    return (CLEAR if ok else UNCLEAR), last[:200]


def api_error(r: Run, *needles: str, accepted: str = UNCLEAR) -> tuple[str, str]:
    """An exception raised by neutronq itself whose message names the problem."""
    if r.rc < 0 or r.rc in (134, 139):
        return WRONG, f"process aborted ({r.rc}): {r.err.strip().splitlines()[-1:] if r.err.strip() else ''}"
    res = r.result
    if not res:
        return UNCLEAR, f"no result (exit {r.rc}): {r.err.strip()[-200:]}"
    if res.get("raised") is None:
        return accepted, f"accepted: {str(res.get('value'))[:150]}"
    message = res["message"].splitlines()[0] if res["message"] else ""
    problems = []
    if "neutronq" not in res.get("origin", ""):
        problems.append(f"raised in {Path(res.get('origin', '?')).name}")
    missing = [n for n in needles if n.lower() not in res["message"].lower()]
    if missing:
        problems.append(f"does not name {missing}")
    return (UNCLEAR if problems else CLEAR), f"{'; '.join(problems)} | {res['raised']}: {message[:200]}"


def ran_ok(r: Run) -> bool:
    return r.rc == 0


@dataclass
class Case:
    name: str
    group: str
    runs: list  # lists of arguments for `python -m neutronq`, or a Python snippet (str)
    judge: Callable
    setup: Optional[Callable[[Path], None]] = None
    interrupt: Optional[tuple] = None  # (text on stdout to wait for, delay) for the last run


CASES: list[Case] = []


def case(name: str, group: str, *runs, judge, setup=None, interrupt=None) -> None:
    CASES.append(Case(name, group, list(runs), judge, setup, interrupt))


def _py(code: str) -> str:
    return textwrap.dedent(code)


# ------------------------------------------------------------------------------------------
# The model
case("missing .pt2", "model", ["quantize", "nets/missing.pt2", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "missing.pt2", "does not exist"))
case("missing .py", "model", ["quantize", "missing.py:make", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "missing.py"))
case("unknown built-in", "model", ["quantize", "efficientnet-lite9"],
     judge=lambda r: cli_error(r[-1], "efficientnet-lite9"))
case("module not found", "model", ["quantize", "nosuchmod:make", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "nosuchmod"))
case("module whose own import fails", "model",
     ["quantize", "bad_import:make", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: _own_import(r[-1]))
case("file whose own import fails", "model",
     ["quantize", "bad_import.py:make", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: _own_import(r[-1]))
case("syntax error in the model file", "model",
     ["quantize", "syntax_err.py:make", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "syntax_err.py", "line 1"))
case("model factory raises", "model",
     ["quantize", "bench_models.py:make_raises", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "make_raises", "tiny_weights.bin"))
case("model factory needs arguments", "model",
     ["quantize", "bench_models.py:make_needs_args", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "make_needs_args", "width"))
case("factory returns a str", "model",
     ["quantize", "bench_models.py:make_string", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "str", "nn.Module"))
case("no such function in the file", "model",
     ["quantize", "bench_models.py:make_nothing", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "make_nothing"))
case("corrupt .pt2", "model", ["quantize", "broken.pt2", "--calibration", "calib.npy"],
     setup=lambda d: (d / "broken.pt2").write_bytes(os.urandom(2000)),
     judge=lambda r: cli_error(r[-1], "broken.pt2"))
case("state dict saved as .pt given as the model", "model", ["quantize", "weights.pt", "--calibration", "calib.npy"],
     setup=lambda d: _save_state_dict(d),
     judge=lambda r: cli_error(r[-1], "weights.pt", "ExportedProgram"))
case(".pt2 with two inputs", "model", ["quantize", "two.pt2", "--calibration", "calib.npy"],
     setup=lambda d: _save_pt2(d, "two.pt2", "make_two_inputs", 2),
     judge=lambda r: cli_error(r[-1], "2 inputs"))
case(".pt2 with another --input-shape", "model",
     ["quantize", "tiny.pt2", "--input-shape", "1,3,32,32", "--calibration", "calib.npy"],
     setup=lambda d: _save_pt2(d, "tiny.pt2", "make_tiny", 1),
     judge=lambda r: cli_error(r[-1], "--input-shape", "1,3,16,16"))
case("no --input-shape", "model", ["quantize", "bench_models.py:make_net", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "--input-shape"))
case("--input-shape without the batch", "model",
     ["quantize", "bench_models.py:make_tiny", "--input-shape", "3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "batch", "1,3,16,16"))
case("--input-shape not numbers", "model",
     ["quantize", "bench_models.py:make_net", "--input-shape", "abc", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "abc"))
case("--input-shape with a zero", "model",
     ["quantize", "bench_models.py:make_net", "--input-shape", "1,3,0,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "1,3,0,16"))
case("--input-shape with the wrong channels", "model",
     ["quantize", "bench_models.py:make_net", "--input-shape", "1,1,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "[1, 1, 16, 16]"))
case("data-dependent model", "model",
     ["quantize", "bench_models.py:make_unexportable", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "data-dependent"))
case("model with two inputs", "model",
     ["quantize", "bench_models.py:make_two_inputs", "--input-shape", "1,3,16,16", "--calibration", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "input"))
case("a folder named like a .pt2", "model", ["quantize", "folder.pt2", "--calibration", "calib.npy"],
     setup=lambda d: (d / "folder.pt2").mkdir(),
     judge=lambda r: cli_error(r[-1], "folder.pt2"))


def _own_import(r: Run):
    verdict, detail = cli_error(r, "nonexistent_pkg_xyz")
    if verdict == CLEAR and "run from the directory" in detail:
        return UNCLEAR, "the fix offered does not fit (the module was found; its own import failed) | " + detail
    return verdict, detail


def _save_state_dict(d: Path) -> None:
    subprocess.run([sys.executable, "-c", PRELUDE + "from bench_models import make_tiny\n"
                    "torch.save(make_tiny().state_dict(), 'weights.pt')"], cwd=d, check=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT / "src")), capture_output=True)


def _save_pt2(d: Path, name: str, factory: str, inputs: int) -> None:
    code = PRELUDE + (f"from bench_models import {factory}\n"
                      f"x = tuple(torch.rand(1, 3, 16, 16) for _ in range({inputs}))\n"
                      f"torch.export.save(torch.export.export({factory}().eval(), x), {name!r})")
    subprocess.run([sys.executable, "-c", code], cwd=d, check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))


# ------------------------------------------------------------------------------------------
# Calibration and evaluation data (command line)
def _images(d: Path, folder: str, files: dict) -> None:
    import numpy as np
    from PIL import Image

    (d / folder).mkdir(exist_ok=True)
    for name, make in files.items():
        make(d / folder / name, np, Image)


case("calibration path missing", "data", ["quantize", *MODEL, "--calibration", "nosuch/"],
     judge=lambda r: cli_error(r[-1], "nosuch"))
case("empty image folder", "data", ["quantize", *MODEL, "--calibration", "empty"],
     setup=lambda d: (d / "empty").mkdir(), judge=lambda r: cli_error(r[-1], "empty"))
case("folder of text files", "data", ["quantize", *MODEL, "--calibration", "notes"],
     setup=lambda d: _images(d, "notes", {f"n{i}.txt": (lambda p, np, I: p.write_text("x")) for i in range(3)}),
     judge=lambda r: cli_error(r[-1], "notes", "image"))
case("image folder for a 4-channel model", "data",
     ["quantize", "bench_models.py:make_tiny4", "--input-shape", "1,4,16,16", "--calibration", "imgs"],
     judge=lambda r: cli_error(r[-1], "[1, 4, 16, 16]"))
case(".npy of the wrong shape", "data", ["quantize", *MODEL, "--calibration", "wrong.npy"],
     setup=lambda d: __import__("numpy").save(d / "wrong.npy", __import__("numpy").zeros((4, 3, 8, 8), "f4")),
     judge=lambda r: cli_error(r[-1], "[4, 3, 8, 8]", "[3, 16, 16]"))
case(".npy with NaN", "data", ["quantize", *MODEL, "--calibration", "nan.npy"],
     setup=lambda d: __import__("numpy").save(d / "nan.npy", __import__("numpy").full((4, 3, 16, 16), float("nan"), "f4")),
     judge=lambda r: cli_error(r[-1], "NaN"))
case(".npy with inf", "data", ["quantize", *MODEL, "--calibration", "inf.npy"],
     setup=lambda d: __import__("numpy").save(d / "inf.npy", __import__("numpy").full((4, 3, 16, 16), float("inf"), "f4")),
     judge=lambda r: cli_error(r[-1], "inf"))
case(".npy of object dtype", "data", ["quantize", *MODEL, "--calibration", "obj.npy"],
     setup=lambda d: __import__("numpy").save(d / "obj.npy", __import__("numpy").array([{"a": 1}] * 4, dtype=object), allow_pickle=True),
     judge=lambda r: cli_error(r[-1], "obj.npy"))
case(".pt holding a dict", "data", ["quantize", *MODEL, "--calibration", "d.pt"],
     setup=lambda d: subprocess.run([sys.executable, "-c", "import torch; torch.save({'x': torch.zeros(4, 3, 16, 16)}, 'd.pt')"], cwd=d, check=True),
     judge=lambda r: cli_error(r[-1], "d.pt", "dict"))
case(".pt holding a pickled object", "data", ["quantize", *MODEL, "--calibration", "obj.pt"],
     setup=lambda d: subprocess.run([sys.executable, "-c", "import torch, collections; torch.save(collections.Counter('ab'), 'obj.pt')"], cwd=d, check=True),
     judge=lambda r: cli_error(r[-1], "obj.pt"))
case(".npy with no samples", "data", ["quantize", *MODEL, "--calibration", "none.npy"],
     setup=lambda d: __import__("numpy").save(d / "none.npy", __import__("numpy").zeros((0, 3, 16, 16), "f4")),
     judge=lambda r: cli_error(r[-1], "none.npy", "no samples"))
case("fewer samples than the batch", "data",
     ["quantize", "bench_models.py:make_net", "--input-shape", "4,3,16,16", "--calibration", "two.npy"],
     setup=lambda d: __import__("numpy").save(d / "two.npy", __import__("numpy").zeros((2, 3, 16, 16), "f4")),
     judge=lambda r: cli_error(r[-1], "2 samples", "batch"))
case("a text file as calibration data", "data", ["quantize", *MODEL, "--calibration", "notes.txt"],
     setup=lambda d: (d / "notes.txt").write_text("hello"),
     judge=lambda r: cli_error(r[-1], "notes.txt"))
case("--calibration-count -3", "data", ["quantize", *MODEL, "--calibration", "calib.npy", "--calibration-count", "-3"],
     judge=lambda r: cli_error(r[-1], "--calibration-count"))
case("--calibration-count 0", "data", ["quantize", *MODEL, "--calibration", "calib.npy", "--calibration-count", "0"],
     judge=lambda r: cli_error(r[-1], "--calibration-count"))
case("--eval-count 0", "data", ["quantize", *MODEL, "--calibration", "calib.npy", "--eval-count", "0"],
     judge=lambda r: cli_error(r[-1], "--eval-count"))
case("--eval-count -1", "data", ["quantize", *MODEL, "--calibration", "calib.npy", "--eval-count", "-1"],
     judge=lambda r: cli_error(r[-1], "--eval-count"))
case("--sim-count -5", "data", ["quantize", *MODEL, "--calibration", "calib.npy", "--sim-count", "-5"],
     judge=lambda r: cli_error(r[-1], "--sim-count"))
case("--layer-samples 0", "data", ["quantize", *MODEL, "--calibration", "calib.npy", "--layer-samples", "0"],
     judge=lambda r: cli_error(r[-1], "--layer-samples"))
case("built-in photos for a grey model", "data",
     ["quantize", "bench_models.py:make_gray", "--input-shape", "1,1,16,16", "--calibration", "photos"],
     judge=lambda r: cli_error(r[-1], "photos"))
case("--eval-data missing", "data", ["quantize", *MODEL, "--calibration", "calib.npy", "--eval-data", "nosuch.npy"],
     judge=lambda r: cli_error(r[-1], "nosuch.npy"))
case("--eval-data of the wrong shape", "data",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--eval-data", "wrong.npy"],
     setup=lambda d: __import__("numpy").save(d / "wrong.npy", __import__("numpy").zeros((4, 3, 8, 8), "f4")),
     judge=lambda r: cli_error(r[-1], "wrong.npy"))
case("a folder of .npy files as calibration data", "data", ["quantize", *MODEL, "--calibration", "arrays"],
     setup=lambda d: _images(d, "arrays", {"a.npy": lambda p, np, I: np.save(p, np.zeros((2, 3, 16, 16), "f4"))}),
     judge=lambda r: cli_error(r[-1], "arrays"))


def _normalize_ignored(r: list) -> tuple[str, str]:
    last = r[-1]
    if last.rc != 0:
        return cli_error(last, "--normalize")
    notes = [l for l in last.err.splitlines() if "--normalize" in l]
    return (CLEAR, notes[0][:200]) if notes else (UNCLEAR, "--normalize ignored without a word")


case("--normalize with a float tensor file", "data",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--normalize", "imagenet", *FAST, "--no-report"],
     judge=_normalize_ignored)


def _uint8_cli(r: list) -> tuple[str, str]:
    last = r[-1]
    if last.rc != 0:
        return cli_error(last, "uint8")
    said = [l for l in last.err.splitlines() if "uint8" in l]
    return (CLEAR, said[0][:200]) if said else (UNCLEAR, "uint8 pixels used as 0..255 floats, --normalize ignored, without a word")


case("uint8 .npy through the command", "data",
     ["quantize", *MODEL, "--calibration", "u8.npy", "--normalize", "unit", *FAST, "--no-report"],
     setup=lambda d: __import__("numpy").save(d / "u8.npy", __import__("numpy").random.default_rng(0).integers(0, 256, (8, 3, 16, 16)).astype("u1")),
     judge=_uint8_cli)


# ------------------------------------------------------------------------------------------
# Image files (the loader the command uses), each value checked
LOAD = '''
from pathlib import Path
import numpy as np
from neutronq.app.inputs import load_calibration
x = attempt(lambda: load_calibration({folder!r}, (1, {channels}, 8, 8), "unit").flatten().tolist()[:3])
'''


def _image_case(name: str, make, expect: Callable, channels: int = 3, needle: str = "") -> None:
    """One image file in a folder; ``expect(values)`` says whether the first pixels are right."""
    def judge(r: list) -> tuple[str, str]:
        last = r[-1]
        res = last.result
        if last.rc != 0 or not res:
            return WRONG if last.rc < 0 else UNCLEAR, f"exit {last.rc}: {last.err[-200:]}"
        if res.get("raised"):
            ok = "img." in res["message"] or "img" in res["message"]
            return (CLEAR if ok and "neutronq" in res.get("origin", "") else UNCLEAR), \
                f"refused: {res['message'][:200]}"
        values = res["value"]
        if not expect(values):
            return WRONG, f"wrong values {[round(v, 3) for v in values]}"
        if needle and needle not in last.err:
            return UNCLEAR, f"right values, but {needle!r} dropped without a word"
        return CLEAR, f"values {[round(v, 3) for v in values]}"

    case(f"image: {name}", "images", _py(PRELUDE + LOAD.format(folder="im", channels=channels)),
         setup=lambda d: _images(d, "im", {"img.png" if "jpeg" not in name else "img.jpg": make}), judge=judge)


def _png16(p, np, Image):
    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(p)


def _palette(p, np, Image):
    img = Image.new("P", (8, 8))
    img.putpalette([10, 200, 30] + [0] * 765)
    img.save(p)


def _gray(p, np, Image):
    Image.new("L", (8, 8), 100).save(p)


def _rgba(p, np, Image):
    Image.new("RGBA", (8, 8), (200, 20, 20, 0)).save(p)


def _la(p, np, Image):
    Image.new("LA", (8, 8), (100, 0)).save(p)


def _cmyk(p, np, Image):
    Image.new("RGB", (8, 8), (200, 20, 20)).convert("CMYK").save(p)


def _float_tiff(p, np, Image):
    Image.fromarray(np.full((8, 8), 0.25, np.float32)).save(p.with_suffix(".tif"))


def _int32(p, np, Image):
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(p.with_suffix(".tif"))


def _bilevel(p, np, Image):
    Image.new("1", (8, 8), 1).save(p)


def _palette_transparent(p, np, Image):
    img = Image.new("P", (8, 8))
    img.putpalette([10, 200, 30] + [0] * 765)
    img.info["transparency"] = 0
    img.save(p, transparency=0)


_near = lambda a, b: abs(a - b) < 0.02
_image_case("16-bit grey PNG", _png16, lambda v: _near(v[0], 30000 / 65535))
_image_case("16-bit grey PNG, grey model", _png16, lambda v: _near(v[0], 30000 / 65535), channels=1)
_image_case("palette PNG", _palette, lambda v: _near(v[0], 10 / 255))
_image_case("palette PNG with transparency", _palette_transparent, lambda v: _near(v[0], 10 / 255), needle="alpha")
_image_case("grey PNG, RGB model", _gray, lambda v: _near(v[0], 100 / 255))
_image_case("RGBA PNG", _rgba, lambda v: _near(v[0], 200 / 255), needle="alpha")
_image_case("grey + alpha PNG", _la, lambda v: _near(v[0], 100 / 255), needle="alpha")
_image_case("CMYK jpeg", _cmyk, lambda v: abs(v[0] - 200 / 255) < 0.08)
_image_case("float TIFF", _float_tiff, lambda v: _near(v[0], 0.25))
_image_case("32-bit integer TIFF", _int32, lambda v: False)
_image_case("1-bit PNG", _bilevel, lambda v: _near(v[0], 1.0))


def _mixed(r: list) -> tuple[str, str]:
    last = r[-1]
    res = last.result
    if not res or res.get("raised"):
        return UNCLEAR, str(res)[:200]
    said = [l for l in last.err.splitlines() if "broken.jpg" in l]
    return (CLEAR, said[0][:200]) if said else (UNCLEAR, "the broken image dropped without naming it")


case("a truncated jpeg among images", "images", _py(PRELUDE + LOAD.format(folder="mix", channels=3)),
     setup=lambda d: (shutil.copytree(d / "imgs", d / "mix"),
                      (d / "mix" / "broken.jpg").write_bytes((d / "imgs" / "img0.jpg").read_bytes()[:300])),
     judge=_mixed)

NPY = '''
import numpy as np
from neutronq.app.inputs import load_calibration
np.save("t.npy", {array})
x = attempt(lambda: load_calibration("t.npy", (1, 3, 4, 4), "unit").flatten().tolist()[:2])
'''


def _tensor_case(name: str, array: str, expect: Callable, needle: str = "") -> None:
    def judge(r: list) -> tuple[str, str]:
        last = r[-1]
        res = last.result
        if not res:
            return UNCLEAR, last.err[-200:]
        if res.get("raised"):
            return api_error(last, needle) if needle else api_error(last)
        if not expect(res["value"]):
            return (UNCLEAR if needle else WRONG), f"accepted as {res['value']}"
        return CLEAR, f"values {res['value']}"

    case(f"tensor file: {name}", "images", _py(PRELUDE + NPY.format(array=array)), judge=judge)


_tensor_case("uint8", "np.full((2, 3, 4, 4), 255, np.uint8)", lambda v: _near(v[0], 1.0), needle="uint8")
_tensor_case("int64", "np.full((2, 3, 4, 4), 7, np.int64)", lambda v: False, needle="int64")
_tensor_case("bool", "np.ones((2, 3, 4, 4), bool)", lambda v: False, needle="bool")
_tensor_case("float16", "np.full((2, 3, 4, 4), 0.5, np.float16)", lambda v: _near(v[0], 0.5))
_tensor_case("float64", "np.full((2, 3, 4, 4), 0.5, np.float64)", lambda v: _near(v[0], 0.5))
_tensor_case("extra sample dimension", "np.full((2, 1, 3, 4, 4), 0.5, np.float32)", lambda v: _near(v[0], 0.5))

# ------------------------------------------------------------------------------------------
# QAT
case("--qat without --train-data", "qat", ["quantize", *MODEL, "--qat"],
     judge=lambda r: cli_error(r[-1], "--train-data"))
case("--train-data missing", "qat", ["quantize", *MODEL, "--qat", "--train-data", "nosuch.pt"],
     judge=lambda r: cli_error(r[-1], "nosuch.pt"))
case("--train-data without labels", "qat", ["quantize", *MODEL, "--qat", "--train-data", "calib.npy"],
     judge=lambda r: cli_error(r[-1], "labels"))
case("--train-data label count differs", "qat", ["quantize", *MODEL, "--qat", "--train-data", "t.pt"],
     setup=lambda d: subprocess.run([sys.executable, "-c", "import torch; torch.save((torch.zeros(8, 3, 16, 16), torch.zeros(5).long()), 't.pt')"], cwd=d, check=True),
     judge=lambda r: cli_error(r[-1], "5 labels"))
case("--train-data folder without classes", "qat", ["quantize", *MODEL, "--qat", "--train-data", "imgs"],
     judge=lambda r: cli_error(r[-1], "class"))
case("--train-data .npz without y", "qat", ["quantize", *MODEL, "--qat", "--train-data", "t.npz"],
     setup=lambda d: __import__("numpy").savez(d / "t.npz", x=__import__("numpy").zeros((4, 3, 16, 16), "f4")),
     judge=lambda r: cli_error(r[-1], "t.npz"))
for _flag, _value in (("--epochs", "0"), ("--epochs", "-1"), ("--batch-size", "0"), ("--lr", "-1"),
                      ("--lr", "nan"), ("--train-count", "-5")):
    case(f"QAT {_flag} {_value}", "qat",
         ["quantize", *MODEL, "--qat", "--train-data", "t.pt", _flag, _value, *FAST, "--no-report"],
         setup=lambda d: subprocess.run([sys.executable, "-c", "import torch; torch.save((torch.rand(8, 3, 16, 16), torch.arange(8) % 2), 't.pt')"], cwd=d, check=True),
         judge=lambda r, f=_flag: cli_error(r[-1], f))
_TRAIN = lambda d: subprocess.run([sys.executable, "-c", "import torch; torch.save((torch.rand(8, 3, 16, 16), torch.arange(8) % 2), 't.pt')"], cwd=d, check=True)
case("--qat --recommended", "qat", ["quantize", *MODEL, "--qat", "--train-data", "t.pt", "--recommended"],
     setup=_TRAIN, judge=lambda r: cli_error(r[-1], "--recommended"))
case("--qat --error-budget", "qat", ["quantize", *MODEL, "--qat", "--train-data", "t.pt", "--error-budget"],
     setup=_TRAIN, judge=lambda r: cli_error(r[-1], "--error-budget"))
case("--qat --adaround", "qat", ["quantize", *MODEL, "--qat", "--train-data", "t.pt", "--adaround"],
     setup=_TRAIN, judge=lambda r: cli_error(r[-1], "--adaround"))

# ------------------------------------------------------------------------------------------
# Options
case("--no-delegate aten::conv2 (no such op)", "options",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--no-delegate", "aten::conv2", *FAST, "--no-report"],
     judge=lambda r: cli_error(r[-1], "aten::conv2"))
case("--no-delegate nosuch.op (malformed)", "options",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--no-delegate", "nosuch.op", *FAST, "--no-report"],
     judge=lambda r: cli_error(r[-1], "nosuch.op"))
case("unknown --target", "options", ["quantize", *MODEL, "--target", "imx999"],
     judge=lambda r: argparse_error(r[-1], "--target"))
case("unknown --flavor", "options", ["quantize", *MODEL, "--flavor", "SDK_1"],
     judge=lambda r: argparse_error(r[-1], "--flavor"))
case("unknown --activation-observer", "options", ["quantize", *MODEL, "--activation-observer", "fancy"],
     judge=lambda r: argparse_error(r[-1], "--activation-observer"))
case("--distillation-settings not JSON", "options", ["quantize", *MODEL, "--distillation-settings", "{a: 1}"],
     judge=lambda r: argparse_error(r[-1], "--distillation-settings"))
case("--threads 0", "options", ["quantize", *MODEL, "--calibration", "calib.npy", "--threads", "0"],
     judge=lambda r: cli_error(r[-1], "--threads"))
case("--threads -2", "options", ["quantize", *MODEL, "--calibration", "calib.npy", "--threads", "-2"],
     judge=lambda r: cli_error(r[-1], "--threads"))
case("unknown option", "options", ["quantize", *MODEL, "--calibrate", "calib.npy"],
     judge=lambda r: argparse_error(r[-1], "--calibrate"))

# ------------------------------------------------------------------------------------------
# Output folders
case("--out is a file", "output", ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "notes.txt", *FAST],
     setup=lambda d: (d / "notes.txt").write_text("mine"),
     judge=lambda r: cli_error(r[-1], "notes.txt"))
case("--out cannot be created", "output",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "/proc/neutronq_out", *FAST],
     judge=lambda r: cli_error(r[-1], "/proc/neutronq_out"))
case("--out empty", "output", ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "", *FAST],
     judge=lambda r: cli_error(r[-1], "--out"))


def _files(d: Path) -> set:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()} if d.exists() else set()


def _earlier_run(r: list, d: Path, force_run: bool = True) -> tuple[str, str]:
    """run 1 (make_net) then run 2 (make_tiny) into the same --out; a third run with --force where
    the second was refused. Wrong: files of both runs side by side, or a report about the other."""
    out = d / "out"
    files = _files(out)
    if "make_net.pte" in files and "make_tiny.pte" in files:
        report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
        return WRONG, f"both runs' programs in one folder, report about {report.get('model', {}).get('name')}"
    second = r[1]
    if second.rc != 0:
        verdict, detail = cli_error(second, "out")
        if verdict != CLEAR:
            return verdict, detail
        # the folder as the three runs left it: the third (--force) replaces the first run as a whole
        if len(r) > 2 and r[2].rc == 0 and "make_tiny.pte" in files and "make_net.pte" not in files:
            return CLEAR, "refused; replaced as a whole with --force | " + detail
        if "make_net.pte" not in files:
            return WRONG, "refused, but the earlier run is gone"
        return CLEAR, detail
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    if report.get("model", {}).get("name") not in (None, "make_tiny"):
        return WRONG, f"report.json describes {report['model']['name']}, the .pte is make_tiny's"
    said = [l for l in second.err.splitlines() + second.out.splitlines() if "replac" in l.lower()]
    return (CLEAR if said else UNCLEAR), (said[0] if said else "replaced without a word")


def _fresh_out_case(name: str, second: list, judge=None, extra_first: tuple = ()) -> None:
    first = ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "out", *FAST, *extra_first]
    case(name, "output", first, second, [*second, "--force"],
         judge=judge or (lambda r, d=None: _earlier_run(r, d)))


_fresh_out_case("--out holding an earlier run", ["quantize", *TINY, "--calibration", "calib.npy", "--out", "out", *FAST])
# the same without the --force run: the refused run must leave the earlier one in place
case("--out holding an earlier run, refused: the earlier run kept", "output",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "out", *FAST],
     ["quantize", *TINY, "--calibration", "calib.npy", "--out", "out", *FAST],
     judge=lambda r, d=None: _earlier_run(r, d))
_fresh_out_case("--out holding an earlier run, --no-report",
                ["quantize", *TINY, "--calibration", "calib.npy", "--out", "out", *FAST, "--no-report"])


def _tflite_failed(r: list, d: Path) -> tuple[str, str]:
    out = d / "out"
    report = json.loads((out / "report.json").read_text())
    listed = [Path(p).name for p in report["files"]["tflite"]]
    present = {p.name for p in (out / "tflite").glob("*.tflite")}
    if not set(listed) <= present:
        return WRONG, f"report.json lists {listed}, the folder holds {sorted(present)}"
    return cli_error(r[1], "nosuch.op", early=False)


case("--tflite run that fails after an earlier one", "output",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "out", *FAST, "--tflite"],
     ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "out", *FAST, "--tflite", "--no-delegate", "nosuch.op"],
     judge=lambda r, d: _tflite_failed(r, d))


def _interrupted(r: list, d: Path) -> tuple[str, str]:
    out = d / "out"
    second = r[-1]
    lines = [l for l in second.err.splitlines() if l.strip() and not any(h in l for h in _HARMLESS)]
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    listed = [Path(p).name for p in report.get("files", {}).get("tflite", [])]
    present = {p.name for p in (out / "tflite").glob("*.tflite")}
    if not report or not set(listed) <= present or "make_net.pte" not in _files(out):
        return WRONG, f"the earlier run is damaged: report {bool(report)}, tflite listed {listed}, present {sorted(present)}"
    if "Traceback" in second.err or len(lines) > 1:
        return UNCLEAR, f"{len(lines)} lines on stderr: {lines[-1:]}"
    return CLEAR, (lines or ["(nothing)"])[-1]


case("Ctrl-C while lowering over an earlier run", "output",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "out", *FAST, "--tflite"],
     ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "out", *FAST, "--tflite", FORCE],
     interrupt=("evaluate int8 model", 1.0), judge=lambda r, d: _interrupted(r, d))


def _early_interrupt(r: list) -> tuple[str, str]:
    last = r[-1]
    lines = [l for l in last.err.splitlines() if l.strip()]
    if "Traceback" in last.err or len(lines) > 1:
        return UNCLEAR, f"{len(lines)} lines on stderr, traceback: {'Traceback' in last.err}"
    return CLEAR, (lines or ["(nothing)"])[-1]


case("Ctrl-C in the first second", "output", ["quantize", *MODEL, "--calibration", "calib.npy"],
     interrupt=("", 1.0), judge=_early_interrupt)


def _calib_inside_out(r: list, d: Path) -> tuple[str, str]:
    counts = [l for l in r[-1].out.splitlines() if "calibration:" in l]
    if r[-1].rc != 0:
        return cli_error(r[-1], "imgs", early=True)
    if counts and "(6 samples)" not in counts[-1]:
        return WRONG, f"the second run calibrated on its own output: {counts[-1][-60:]}"
    return CLEAR, counts[-1][-60:] if counts else ""


case("--out inside the calibration folder, twice", "output",
     ["quantize", *MODEL, "--calibration", "imgs", "--out", "imgs/out", *FAST],
     ["quantize", *MODEL, "--calibration", "imgs", "--out", "imgs/out", *FAST, FORCE],
     judge=lambda r, d: _calib_inside_out(r, d))


def _calib_in_out(r: list, d: Path) -> tuple[str, str]:
    if not (d / "out" / "mine.npy").exists():
        return WRONG, "the calibration data inside the output folder is gone"
    if r[-1].rc != 0:
        return cli_error(r[-1], "out", early=True)
    return CLEAR, "kept"


case("calibration data inside --out with --force", "output",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "out", *FAST, "--no-report"],
     ["quantize", *MODEL, "--calibration", "out/mine.npy", "--out", "out", *FAST, "--no-report", FORCE],
     setup=None, judge=lambda r, d: _calib_in_out(r, d))


def _user_folder(r: list, d: Path) -> tuple[str, str]:
    if not (d / "results" / "thesis.txt").exists():
        return WRONG, "the user's own file in --out is gone"
    if r[-1].rc != 0:
        return cli_error(r[-1], "results")
    return CLEAR, "written beside the user's files"


case("--out a folder of the user's own files", "output",
     ["quantize", *MODEL, "--calibration", "calib.npy", "--out", "results", *FAST, "--no-report", FORCE],
     setup=lambda d: ((d / "results").mkdir(), (d / "results" / "thesis.txt").write_text("mine")),
     judge=lambda r, d: _user_folder(r, d))

# ------------------------------------------------------------------------------------------
# Numbers: int32 bias, ranges int8 cannot hold
BIAS = '''
import torch.nn as nn
from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
from bench_models import Bias
torch.manual_seed(0)
m = Bias({zero}, {bias}).eval()
x = torch.rand(1, 3, 8, 8)
def run():
    q = calibrate_and_quantize(torch.export.export(m, (x,)), [(torch.rand(1, 3, 8, 8),) for _ in range(4)],
                               NeutronQuantizer(NeutronTargetSpec("imxrt700"), is_qat={qat}, per_channel={pc}))
    with torch.no_grad():
        ref, got = m(x), q(x)
    return float(((got - ref).abs().max() / ref.abs().max()))
attempt(run) if not {qat} else None
'''


def _bias_judge(r: list) -> tuple[str, str]:
    last = r[-1]
    res = last.result
    if not res or res.get("raised"):
        return UNCLEAR, str(res)[:200]
    err = res["value"]
    if err > 0.05:
        return WRONG, f"relative output error {err:.3g}, warnings: {res['warnings'][:1]}"
    return CLEAR, f"relative output error {err:.2g}"


for _zero, _bias, _pc in ((True, 1.5, False), (False, 1e5, False), (False, -1e5, False), (True, 1.5, True),
                          (False, 1e5, True), (False, 3e9, False)):
    case(f"{'per-channel' if _pc else 'per-tensor'} bias {_bias:g}{' on zero weights' if _zero else ''}", "numbers",
         _py(PRELUDE + BIAS.format(zero=_zero, bias=_bias, qat=False, pc=_pc)), judge=_bias_judge)

RANGES = '''
from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
from bench_models import make_tiny
m = make_tiny().eval()
x = torch.rand(1, 3, 16, 16) * {scale}
def run():
    q = calibrate_and_quantize(torch.export.export(m, (x,)), [(torch.rand(1, 3, 16, 16) * {scale},) for _ in range(4)],
                               NeutronQuantizer(NeutronTargetSpec("imxrt700")))
    with torch.no_grad():
        ref, got = m(x), q(x)
    return {{"ref": ref.flatten().tolist(), "got": got.flatten().tolist()}}
attempt(run)
'''


def _range_judge(r: list) -> tuple[str, str]:
    res = r[-1].result
    if not res:
        return UNCLEAR, r[-1].err[-200:]
    if res.get("raised"):
        return api_error(r[-1])
    said = [w for w in res["warnings"] if "range" in w or "overflow" in w or "int8" in w]
    if said:
        return CLEAR, said[0][:200]
    return WRONG, f"float {res['value']['ref'][:2]}, int8 {res['value']['got'][:2]}, no warning"


for _scale in ("1e30", "3e38", "1e-8"):
    case(f"calibration inputs around {_scale}", "numbers", _py(PRELUDE + RANGES.format(scale=_scale)),
         judge=_range_judge)

# ------------------------------------------------------------------------------------------
# The Python API
API = '''
from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
from bench_models import make_tiny
ep = torch.export.export(make_tiny().eval(), (torch.rand(1, 3, 16, 16),))
q = NeutronQuantizer(NeutronTargetSpec("imxrt700"))
attempt(lambda: calibrate_and_quantize(ep, {inputs}, q) and "quantized")
'''
for _name, _inputs, _needles in (
        ("uint8 calibration inputs", "[(torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8),)]", ("uint8",)),
        ("int64 calibration inputs", "[(torch.randint(0, 255, (1, 3, 16, 16)),)]", ("int64",)),
        ("float64 calibration inputs", "[(torch.rand(1, 3, 16, 16, dtype=torch.float64),)]", ("float64",)),
        ("a bare batch instead of a list", "torch.rand(8, 3, 16, 16)", ("list",)),
        ("samples of the wrong shape", "[(torch.rand(1, 3, 20, 20),)]", ("[1, 3, 20, 20]",)),
        ("numpy arrays", "[__import__('numpy').zeros((1, 3, 16, 16), 'f4')]", ("ndarray",)),
        ("a dict per sample", "[{'x': torch.rand(1, 3, 16, 16)}]", ("dict",)),
        ("samples without the batch", "[torch.rand(3, 16, 16)]", ("[3, 16, 16]",)),
        ("None", "None", ("None",)),
):
    def _api_judge(r, needles=_needles, name=_name):
        if name == "float64 calibration inputs" and r[-1].result.get("raised") is None:
            return CLEAR, "converted"
        return api_error(r[-1], *needles)

    case(f"API: {_name}", "api", _py(PRELUDE + API.format(inputs=_inputs)), judge=_api_judge)

PTE = '''
from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary
from executorch.exir import schema as S
from neutronq import load_program
original = open("{root}/tiny.pte", "rb").read()
x = torch.load("{root}/tiny_input.pt")
expected = torch.load("{root}/tiny_output.pt")
def corrupt():
    pte = deserialize_pte_binary(original)
    plan = pte.program.execution_plan[0]
    kernels = [(i.instr_args, plan.operators[i.instr_args.op_index].name) for i in plan.chains[0].instructions
               if isinstance(i.instr_args, S.KernelCall)]
    {edit}
    return bytes(serialize_pte_binary(pte_file=pte))
def run():
    data = corrupt()
    got = load_program(data)(x)
    return "identical" if torch.equal(got, expected) else f"different outputs: {{(got - expected).abs().max():.3g}}"
attempt(run)
'''


def _pte_judge(r: list) -> tuple[str, str]:
    last = r[-1]
    if last.rc < 0 or last.rc in (134, 139):
        tail = [l for l in last.err.splitlines() if l.strip()][-1:]
        return WRONG, f"process aborted ({last.rc}): {tail}"
    res = last.result
    if not res:
        return UNCLEAR, f"exit {last.rc}: {last.err[-200:]}"
    if res.get("raised") is None:
        return (CLEAR, "identical") if res["value"] == "identical" else (WRONG, res["value"])
    return api_error(last)


_LAST_DQ = "dq = [a for a, n in kernels if 'dequantize' in n][-1]"
_FIRST_Q = "q = [a for a, n in kernels if n.endswith('quantize_per_tensor')][0]"
for _name, _edit in (
        ("output zero point 42501", _LAST_DQ + "; plan.values[dq.args[2]].val = S.Int(42501)"),
        ("input quant_max 1000", _FIRST_Q + "; plan.values[q.args[4]].val = S.Int(1000)"),
        ("input scale -0.1", _FIRST_Q + "; plan.values[q.args[1]].val = S.Double(-0.1)"),
        ("input scale NaN", _FIRST_Q + "; plan.values[q.args[1]].val = S.Double(float('nan'))"),
        ("output scale x 2", _LAST_DQ + "; plan.values[dq.args[1]].val = S.Double(plan.values[dq.args[1]].val.double_val * 2)"),
        ("input zero point 300", _FIRST_Q + "; plan.values[q.args[2]].val = S.Int(300)"),
        ("quant_min above quant_max", _FIRST_Q + "; plan.values[q.args[3]].val = S.Int(100)"),
        ("a tensor's size changed", "plan.values[plan.outputs[0]].val.sizes[-1] = 7"),
        ("instruction argument out of range", "kernels[0][0].args[0] = 100000"),
        ("memory offset past the arena", "next(v.val for v in plan.values if isinstance(v.val, S.Tensor) and v.val.allocation_info).allocation_info.memory_offset_low = 1 << 30"),
):
    case(f"corrupt .pte: {_name}", "program", _py(PRELUDE + PTE.format(root="{root}", edit=_edit)), judge=_pte_judge)

FILE = '''
from neutronq import load_program, run_on_host
attempt(lambda: {call})
'''
for _name, _setup, _call, _needles in (
        ("truncated .pte", "open('bad.pte', 'wb').write(open('{root}/tiny.pte', 'rb').read()[:400])", "load_program('bad.pte')", ()),
        ("empty .pte", "open('bad.pte', 'wb').write(b'')", "load_program('bad.pte')", ()),
        ("a .pt2 given as .pte", "import shutil; shutil.copy('{root}/tiny.pte', 'x'); torch.export.save(torch.export.export(torch.nn.ReLU(), (torch.rand(2),)), 'bad.pte')", "load_program('bad.pte')", ()),
        ("random bytes as .pte", "open('bad.pte', 'wb').write(bytes(range(256)) * 40)", "load_program('bad.pte')", ()),
        ("a .pte path that does not exist", "pass", "load_program('nosuch.pte')", ("nosuch.pte",)),
        ("numpy input", "pass", "run_on_host('{root}/tiny.pte', __import__('numpy').zeros((1, 3, 16, 16), 'f4'))", ("tensor",)),
        ("uint8 image input", "pass", "run_on_host('{root}/tiny.pte', torch.zeros((1, 3, 16, 16), dtype=torch.uint8))", ("uint8",)),
        ("input without the batch", "pass", "run_on_host('{root}/tiny.pte', torch.zeros((3, 16, 16)))", ("[3, 16, 16]",)),
):
    case(f"program file: {_name}", "program", _py(PRELUDE + _setup + "\n" + FILE.format(call=_call)),
         judge=lambda r, n=_needles: _pte_judge(r) if r[-1].rc < 0 else api_error(r[-1], *n))


# ------------------------------------------------------------------------------------------
def _has_force(src: Path) -> bool:
    proc = subprocess.run(cli("quantize", "--help"), env=_env(src), capture_output=True, text=True, timeout=300,
                          check=False)
    return "--force" in proc.stdout


def run_case(c: Case, root: Path, src: Path, force: bool) -> tuple[str, str, float]:
    work = Path(tempfile.mkdtemp(prefix="case_", dir=root))
    for name in ("bench_models.py", "bad_import.py", "syntax_err.py", "calib.npy"):
        shutil.copy(root / name, work / name)
    shutil.copytree(root / "imgs", work / "imgs")
    if c.setup:
        c.setup(work)
    runs = []
    for i, spec in enumerate(c.runs):
        interrupt = c.interrupt if i == len(c.runs) - 1 else None
        if "mine.npy" in " ".join(spec if isinstance(spec, list) else []) and (work / "out").exists():
            shutil.copy(work / "calib.npy", work / "out" / "mine.npy")
        if isinstance(spec, str):
            cmd = [sys.executable, "-c", spec.replace("{root}", str(root))]
        else:
            cmd = cli(*[a for a in (("--force" if a == FORCE else a) for a in spec) if force or a != "--force"])
        kwargs = {}
        if interrupt:
            kwargs = {"interrupt_after": interrupt[0], "interrupt_delay": interrupt[1]}
        runs.append(_run(cmd, work, src, **kwargs))
        if (c.name.endswith("earlier run") or "earlier run," in c.name) and i == 1 and runs[-1].rc == 0:
            break  # replaced without --force: no third run
    import inspect

    takes_folder = "d" in inspect.signature(c.judge).parameters  # judges that look at the case folder
    verdict, detail = c.judge(runs, work) if takes_folder else c.judge(runs)
    shutil.rmtree(work, ignore_errors=True)
    return verdict, detail, sum(r.seconds for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="run the cases whose name contains this text")
    parser.add_argument("--group", default=None, help="run one group: " + ", ".join(sorted({c.group for c in CASES})))
    parser.add_argument("--json", default=None, help="write the verdicts to this file")
    parser.add_argument("--src", default=str(ROOT / "src"), help="the neutronq source to measure")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    cases = [c for c in CASES if (not args.only or args.only in c.name) and (not args.group or c.group == args.group)]
    if args.list:
        for c in cases:
            print(f"{c.group:8s} {c.name}")
        print(f"{len(cases)} cases")
        return
    src = Path(args.src).resolve()
    root = Path(tempfile.mkdtemp(prefix="neutronq_bad_inputs_"))
    start = time.perf_counter()
    _write_fixtures(root, src)
    force = _has_force(src)
    rows = []
    for c in cases:
        try:
            verdict, detail, seconds = run_case(c, root, src, force)
        except Exception as e:  # a case that could not be judged counts as unclear
            verdict, detail, seconds = UNCLEAR, f"harness: {type(e).__name__}: {e}", 0.0
        rows.append({"group": c.group, "case": c.name, "verdict": verdict, "detail": detail, "seconds": seconds})
        print(f"{verdict:8s} {c.group:8s} {c.name:55s} {detail[:160]}", flush=True)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (CLEAR, UNCLEAR, WRONG)}
    print(f"\n{len(rows)} cases: {counts[CLEAR]} clear, {counts[UNCLEAR]} unclear, {counts[WRONG]} wrong "
          f"({time.perf_counter() - start:.0f} s, source {src})")
    if args.json:
        Path(args.json).write_text(json.dumps({"source": str(src), "counts": counts, "cases": rows}, indent=1))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
