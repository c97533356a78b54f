"""The report as a person sees it: the HTML rendered by headless Chromium, every plot visible."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from report.report_helpers import screenshot, small_model_run
from scipy import ndimage

from neutronq.report.html import FRAME_COLOR


@pytest.fixture(scope="module")
def shot():
    run = small_model_run()
    assert run.returncode == 0, f"neutronq quantize failed:\n{run.stdout}\n{run.stderr}"
    png = screenshot(run.out / "report.html", run.out / "screenshot.png")
    return run, np.asarray(Image.open(png).convert("RGB"))


def _plot_frames(pixels: np.ndarray) -> list[tuple[slice, slice]]:
    """Bounding boxes of the plot frames: large connected regions of exactly FRAME_COLOR."""
    mask = np.all(pixels == np.array(FRAME_COLOR, dtype=pixels.dtype), axis=-1)
    labels, _ = ndimage.label(mask)
    boxes = []
    for box in ndimage.find_objects(labels):
        height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
        if height >= 150 and width >= 400:
            boxes.append(box)
    return sorted(boxes, key=lambda b: b[0].start)


def test_every_plot_is_rendered_and_not_blank(shot):
    run, pixels = shot
    frames = _plot_frames(pixels)
    plots = run.report["files"]["plots"]
    assert len(frames) == len(plots) == 4, f"found {len(frames)} plot frames in the screenshot"
    for rows, cols in frames:
        inner = pixels[rows.start + 6 : rows.stop - 6, cols.start + 6 : cols.stop - 6].reshape(-1, 3)
        colours, counts = np.unique(inner, axis=0, return_counts=True)
        background_share = counts.max() / counts.sum()
        # a plot has axes, text, lines and bars in many colours; a missing image or an empty box
        # is one colour with at most a small icon
        assert len(colours) > 50, f"plot at rows {rows.start}-{rows.stop}: {len(colours)} colours"
        assert background_share < 0.97, f"plot at rows {rows.start}-{rows.stop} is {background_share:.1%} one colour"
        assert inner.std(axis=0).max() > 20


def test_a_missing_plot_is_caught(shot, tmp_path):
    """The check above fails on a report whose PNG files are gone (the frames render empty)."""
    run, _ = shot
    copy = tmp_path / "report"
    shutil.copytree(run.out, copy, ignore=shutil.ignore_patterns("plots", "*.pte", "tflite"))
    pixels = np.asarray(Image.open(screenshot(copy / "report.html", tmp_path / "broken.png")).convert("RGB"))
    frames = _plot_frames(pixels)
    assert frames, "the plot frames should still render"
    for rows, cols in frames:
        inner = pixels[rows.start + 6 : rows.stop - 6, cols.start + 6 : cols.stop - 6].reshape(-1, 3)
        colours, counts = np.unique(inner, axis=0, return_counts=True)
        assert counts.max() / counts.sum() >= 0.97 or len(colours) <= 50
