"""RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR (int8; values are moved or interpolated, the
quantization is the input's).

* RESIZE_BILINEAR (``reference_ops::ResizeBilinearInteger``): 10-bit fixed-point source
  coordinates ``scale_10 = (2^10 * in + out / 2) / out`` (``align_corners``: ``in - 1`` over
  ``out - 1``), ``half_pixel_centers`` adding ``scale_10 / 2 - 2^9``; the four taps weighted in
  units of 2^-20, summed in int64, then ``(sum +/- 2^19) / 2^20`` (C++ division: ties away from
  zero).
* RESIZE_NEAREST_NEIGHBOR (``reference_ops::ResizeNearestNeighbor``): source index
  ``floor((i + offset) * scale)`` in float (``TfLiteRound`` with ``align_corners``), ``scale``
  ``in / out`` as floats, clamped to ``in - 1`` (and 0 with ``half_pixel_centers``).
"""

from __future__ import annotations

import numpy as np
import torch

from neutronq.runtime.emulate.base import EmulatedOp, OpInfo, flat, register, unflat
from neutronq.runtime.emulate.fixedpoint import f32, round_half_away_f32

__all__ = ["ResizeBilinearOp", "ResizeNearestOp"]


def _geometry(op: OpInfo):
    x, out = op.inputs[0], op.outputs[0]
    op.require_int8(x, out)
    if x.rank != 4:
        raise op.fail("input is not rank 4")
    if out.scale != x.scale or out.zero_point != x.zero_point:
        raise op.fail("the output's quantization differs from the input's (LiteRT does not rescale)")
    return x.shape[1:3], out.shape[1:3]


def _bilinear_axis(size_in: int, size_out: int, align: bool, half: bool):
    scale = ((1 << 10) * size_in + size_out // 2) // size_out
    if align and size_out > 1:
        scale = ((1 << 10) * (size_in - 1) + (size_out - 1) // 2) // (size_out - 1)
    lo, hi, frac = [], [], []
    for i in range(size_out):
        v = i * scale + (scale // 2 - (1 << 9) if half else 0)
        lo.append(max(int(np.trunc(v / (1 << 10))), 0))  # C++ division of a possibly negative value
        hi.append(min(int(np.trunc((v + (1 << 10) - 1) / (1 << 10))), size_in - 1))
        frac.append(v - (1 << 10) * lo[-1])
    return lo, hi, frac


class ResizeBilinearOp(EmulatedOp):
    def __init__(self, op: OpInfo):
        super().__init__(op)
        (h, w), (oh, ow) = _geometry(op)
        align = bool(op.option("alignCorners", False))
        half = bool(op.option("halfPixelCenters", False))
        for name, (size_in, size_out) in (("y", (h, oh)), ("x", (w, ow))):
            lo, hi, frac = _bilinear_axis(size_in, size_out, align, half)
            self.register_buffer(f"{name}0", torch.tensor(lo, dtype=torch.int64))
            self.register_buffer(f"{name}1", torch.tensor(hi, dtype=torch.int64))
            self.register_buffer(f"{name}f", torch.tensor(frac, dtype=torch.int64))

    def forward(self, x, *_):
        samples = x.shape[0]
        x = flat(x).to(torch.int64)
        rows0, rows1 = x.index_select(1, self.y0), x.index_select(1, self.y1)
        wy1 = self.yf.view(1, -1, 1, 1)
        wy0 = (1 << 10) - wy1
        wx1 = self.xf.view(1, 1, -1, 1)
        wx0 = (1 << 10) - wx1
        total = (rows0.index_select(2, self.x0) * wy0 * wx0 + rows1.index_select(2, self.x0) * wy1 * wx0
                 + rows0.index_select(2, self.x1) * wy0 * wx1 + rows1.index_select(2, self.x1) * wy1 * wx1)
        rounded = torch.where(total > 0, total + (1 << 19), total - (1 << 19))
        y = torch.div(rounded, 1 << 20, rounding_mode="trunc")
        return (unflat(y.to(torch.int8), samples),)


def _nearest_axis(size_in: int, size_out: int, align: bool, half: bool):
    scale = f32(f32(size_in - 1) / f32(size_out - 1)) if align and size_out > 1 else f32(f32(size_in) / f32(size_out))
    offset = f32(0.5) if half else f32(0.0)
    out = []
    for i in range(size_out):
        v = f32(f32(f32(i) + offset) * scale)
        idx = int(round_half_away_f32(v)) if align else int(np.floor(v))
        idx = min(idx, size_in - 1)
        if half:
            idx = max(0, idx)
        out.append(idx)
    return out


class ResizeNearestOp(EmulatedOp):
    def __init__(self, op: OpInfo):
        super().__init__(op)
        (h, w), (oh, ow) = _geometry(op)
        align = bool(op.option("alignCorners", False))
        half = bool(op.option("halfPixelCenters", False))
        self.register_buffer("rows", torch.tensor(_nearest_axis(h, oh, align, half), dtype=torch.int64))
        self.register_buffer("cols", torch.tensor(_nearest_axis(w, ow, align, half), dtype=torch.int64))

    def forward(self, x, *_):
        samples = x.shape[0]
        y = flat(x).index_select(1, self.rows).index_select(2, self.cols)
        return (unflat(y, samples),)


register("RESIZE_BILINEAR")(ResizeBilinearOp)
register("RESIZE_NEAREST_NEIGHBOR")(ResizeNearestOp)
