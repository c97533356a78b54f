"""The output folder: a run never mixes its files with an earlier run's; a failed or interrupted
run leaves the earlier results as they were; inputs are never read from the output folder.

The folder rules are checked on ``OutputFolder`` directly; the command runs twice for real (the
second time replacing the first with --force, calibrating on an image folder that holds the output
folder), and twice more stopped at lowering, in between, by an error and by Ctrl-C.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report.report_helpers import SMALL_MODEL_SHAPE, write_small_model

from neutronq.app import pipeline
from neutronq.app.inputs import InputError
from neutronq.app.output import RUN_MARKER, OutputFolder, is_run_folder


def _staging_left(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".neutronq-" in p.name]


# ------------------------------------------------------------------------------------------
# the rules, on OutputFolder
def test_a_new_folder_is_staged_next_to_it_and_moved_in_place(tmp_path):
    out = OutputFolder(tmp_path / "runs" / "net")
    assert out.staging.parent == tmp_path / "runs" and out.staging.name.startswith(".net.neutronq-")
    assert not out.replaces and not (tmp_path / "runs" / "net").exists()
    (out.staging / "net.pte").write_bytes(b"x")
    out.commit("net")
    assert sorted(p.name for p in (tmp_path / "runs" / "net").iterdir()) == [RUN_MARKER, "net.pte"]
    assert json.loads((tmp_path / "runs" / "net" / RUN_MARKER).read_text())["model"] == "net"
    assert _staging_left(tmp_path / "runs") == []
    assert (tmp_path / "runs" / "net").stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_earlier_run_is_refused_without_force_and_replaced_whole_with_it(tmp_path):
    first = OutputFolder(tmp_path / "out")
    (first.staging / "a.pte").write_bytes(b"a")
    (first.staging / "tflite").mkdir()
    (first.staging / "tflite" / "p0.tflite").write_bytes(b"t")
    first.commit("a")
    with pytest.raises(InputError, match=r"holds an earlier run of .*\(a.pte, tflite\)\. Fix: pass --force"):
        OutputFolder(tmp_path / "out")
    second = OutputFolder(tmp_path / "out", force=True)
    assert second.replaces
    (second.staging / "b.pte").write_bytes(b"b")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RUN_MARKER, "a.pte", "tflite"]  # until commit
    second.commit("b")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RUN_MARKER, "b.pte"]
    assert _staging_left(tmp_path) == []


def test_a_discarded_run_leaves_the_earlier_one(tmp_path):
    first = OutputFolder(tmp_path / "out")
    (first.staging / "a.pte").write_bytes(b"a")
    first.commit("a")
    second = OutputFolder(tmp_path / "out", force=True)
    (second.staging / "b.pte").write_bytes(b"b")
    second.discard()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RUN_MARKER, "a.pte"]
    assert _staging_left(tmp_path) == []


def test_runs_from_before_the_marker_count_as_runs(tmp_path):
    old = tmp_path / "out"
    (old / "plots").mkdir(parents=True)
    for name in ("net.pte", "report.json", "report.html"):
        (old / name).write_text("x")
    assert is_run_folder(old)
    (old / "thesis.txt").write_text("mine")
    assert not is_run_folder(old)


def test_a_folder_of_other_files_is_never_replaced(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "thesis.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(InputError, match=r"holds files neutronq did not write \(e.g. 'thesis.txt'\)"):
            OutputFolder(tmp_path / "results", force=force)
    assert (tmp_path / "results" / "thesis.txt").read_text() == "mine"


@pytest.mark.parametrize("target, message", [
    ("", "is the working folder or one above it"),
    (".", "is the working folder or one above it"),
    ("..", "is the working folder or one above it"),
    ("notes.txt", "is a file, not a folder"),
    ("/proc/neutronq_out", "cannot write the results next to --out '/proc/neutronq_out'"),
])
def test_unusable_targets_are_refused_before_any_work(tmp_path, monkeypatch, target, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=message):
        OutputFolder(Path(target))
    assert _staging_left(tmp_path) == []


def test_inputs_inside_the_folder_a_run_replaces_are_refused(tmp_path):
    first = OutputFolder(tmp_path / "out")
    first.commit("a")
    np.save(tmp_path / "out" / "mine.npy", np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"calibration data '.*mine.npy' is inside --out"):
        OutputFolder(tmp_path / "out", force=True, inputs=[("calibration data", str(tmp_path / "out" / "mine.npy"))])


# ------------------------------------------------------------------------------------------
# the command, for real
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An image folder of 6 photos-like images and the small model; the first run writes into
    imgs/out, inside the calibration folder."""
    work = tmp_path_factory.mktemp("output")
    write_small_model(work)
    rng = np.random.default_rng(0)
    (work / "imgs").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(work / "imgs" / f"{i}.png")
    return work


_ARGS = ["quantize", "small_models.py:make_net", "--input-shape", SMALL_MODEL_SHAPE, "--calibration", "imgs",
         "--out", "imgs/out", "--eval-count", "4", "--sim-count", "1", "--layer-samples", "1", "--tflite"]


def _main(workdir: Path, capsys, *extra: str) -> tuple[int, str, str]:
    from neutronq.app.cli import main

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        code = main([*_ARGS, *extra])
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first_run(workdir):
    from neutronq.app.cli import main

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        code = main(_ARGS)
    finally:
        os.chdir(cwd)
    assert code == 0
    return _snapshot(workdir / "imgs" / "out")


def test_a_second_run_is_refused_before_any_work(workdir, first_run, capsys):
    code, out, err = _main(workdir, capsys)
    assert code == 2 and "holds an earlier run" in err and "--force" in err
    assert "[neutronq] load" not in out
    assert _snapshot(workdir / "imgs" / "out") == first_run


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_a_run_stopped_while_lowering_leaves_the_earlier_one(workdir, first_run, capsys, monkeypatch, failure):
    def stop(*args, **kwargs):
        raise failure("stopped while lowering")

    monkeypatch.setattr(pipeline, "_lower", stop)
    code, _, err = _main(workdir, capsys, "--force")
    assert code == (130 if failure is KeyboardInterrupt else 1)
    assert len([l for l in err.splitlines() if l.startswith("neutronq: ")]) == 1, err
    assert _snapshot(workdir / "imgs" / "out") == first_run
    assert _staging_left(workdir / "imgs") == []


def test_force_replaces_the_run_and_inputs_never_come_from_the_output(workdir, first_run, capsys):
    """The output folder lies inside the calibration folder: both runs calibrate on the 6 images
    only, not on the first run's plots (10 samples)."""
    report = json.loads(first_run["report.json"])
    assert report["quantization"]["calibration"]["samples"] == 6
    code, out, err = _main(workdir, capsys, "--force")
    assert code == 0, err
    assert "calibration: imgs (6 samples)" in out and "replaced when this one succeeds" in out
    folder = workdir / "imgs" / "out"
    now = json.loads((folder / "report.json").read_text())
    assert now["quantization"]["calibration"]["samples"] == 6
    assert now["created"] >= report["created"]
    assert Path(now["files"]["pte"]) == Path("imgs/out/make_net.pte")
    assert Path(now["files"]["html"]) == Path("imgs/out/report.html")
    assert all((workdir / p).exists() for p in now["files"]["tflite"] + now["files"]["plots"])
    assert _staging_left(workdir / "imgs") == []
