"""``neutronq quantize`` across processes (``torchrun``, two CPU processes, Gloo) and ``--device``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from report.report_helpers import SMALL_MODEL_SHAPE, write_small_model

from neutronq.app.cli import main
from neutronq.app.output import RUN_MARKER


def torchrun(*args: str, cwd: Path, processes: int = 2, timeout: int = 900) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node PROCESSES -m neutronq ARGS`` in ``cwd``."""
    env = dict(os.environ, NEUTRONQ_PROGRESS="0", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={processes}", "-m", "neutronq", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_qat_under_torchrun_writes_one_set_of_files_once(tmp_path):
    write_small_model(tmp_path)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 16, 16, generator=g)
    torch.save((x, (x.mean((1, 2, 3)) > 0).long()), tmp_path / "train.pt")
    proc = torchrun("quantize", "small_models.py:make_net", "--input-shape", SMALL_MODEL_SHAPE, "--qat",
                    "--train-data", "train.pt", "--epochs", "2", "--batch-size", "16", "--eval-count", "16",
                    "--device", "cpu", "--tflite", "--out", "out", cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    # both processes trained and evaluated; rank 0 alone lowered, wrote and summarised
    assert "[neutronq] rank 1: quantize:" in output and "[neutronq] rank 1: evaluate int8 model:" in output
    assert "rank 1: lower" not in output and "rank 1: write" not in output
    for line in ("[neutronq] quantize:", "[neutronq] lower:", "[neutronq] write .pte:", "[neutronq] write report:",
                 "program: out/make_net.pte"):
        assert output.count(line) == 1, (line, output[-4000:])
    files = _files(tmp_path / "out")
    assert {"make_net.pte", "report.html", "report.json", "plots/outputs.png"} <= set(files), files
    assert all(f in ("make_net.pte", "report.html", "report.json", RUN_MARKER) or (f.startswith("plots/") and f.endswith(".png"))
               or (f.startswith("tflite/") and f.endswith(".tflite")) for f in files), files
    assert any(f.endswith(".tflite") for f in files)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["run"] == {"device": "cpu", "processes": 2, "backend": "gloo"}
    assert report["quantization"]["mode"] == "QAT"
    assert report["quantization"]["training"]["samples"] == 64
    assert report["outputs"]["evaluation"]["samples"] == 16  # gathered from both processes
    assert report["outputs"]["simulated_vs_float"]["sqnr_db"] > 15.0


@pytest.mark.parametrize("device, message", [("gpu0", "unknown device"), ("cuda:99", "cuda")])
def test_a_device_that_is_not_there(device, message, capsys):
    if device.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("this machine has that GPU")
    assert main(["quantize", "missing.pt2", "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neutronq: error:") and message in err.lower() and "--device" in err, err
