"""AVERAGE_POOL_2D and MAX_POOL_2D (int8, ``reference_integer_ops::AveragePool`` / ``MaxPool``).

Both read only in-bounds taps (SAME padding puts ``total // 2`` before), keep the input's
quantization (Prepare checks it), and clamp to the fused activation's range.

AVERAGE_POOL_2D: ``acc = sum of the raw int8 taps`` (zero points not removed), ``count = number
of in-bounds taps``, ``avg = acc > 0 ? (acc + count/2) / count : (acc - count/2) / count`` with
C++ integer division (truncation toward zero): rounds half away from zero. Here the sum is a
float32 ``avg_pool2d(divisor_override=1)`` over the zero-padded input (exact: at most
``128 * taps``), the count a per-position constant computed once, the division ``trunc``.

MAX_POOL_2D: the maximum of the in-bounds taps; the input is padded with -128 (never above an
in-bounds tap).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from ai_edge_litert import schema_py_generated as tfl

from neutronq.runtime.emulate.base import EmulatedOp, OpInfo, activation_range, flat, register, unflat
from neutronq.runtime.emulate.conv import same_padding

__all__ = ["PoolOp"]


def _geometry(op: OpInfo):
    x, out = op.inputs[0], op.outputs[0]
    op.require_int8(x, out)
    if x.rank != 4:
        raise op.fail(f"input {x.describe()} is not rank 4")
    kh, kw = op.option("filterHeight", 1), op.option("filterWidth", 1)
    sh, sw = op.option("strideH", 1), op.option("strideW", 1)
    h, w = x.shape[1:3]
    oh, ow = out.shape[1:3]
    if op.option("padding") == tfl.Padding.SAME:
        top, bottom = same_padding(h, kh, sh, 1, oh)
        left, right = same_padding(w, kw, sw, 1, ow)
    else:
        top = left = 0
        bottom = max((oh - 1) * sh + kh - h, 0)
        right = max((ow - 1) * sw + kw - w, 0)
    return (kh, kw), (sh, sw), (left, right, top, bottom), (h, w), (oh, ow)


def _counts(size: int, kernel: int, stride: int, before: int, out: int) -> np.ndarray:
    start = np.arange(out) * stride - before
    return np.minimum(start + kernel, size) - np.maximum(start, 0)


class PoolOp(EmulatedOp):
    def __init__(self, op: OpInfo, average: bool):
        super().__init__(op)
        kernel, stride, pad, (h, w), (oh, ow) = _geometry(op)
        self.kernel, self.stride, self.pad, self.average = kernel, stride, pad, average
        self.lo, self.hi = activation_range(op, op.outputs[0])
        if average:
            count = np.outer(_counts(h, kernel[0], stride[0], pad[2], oh),
                             _counts(w, kernel[1], stride[1], pad[0], ow)).astype(np.float32)
            if np.any(count <= 0):
                raise op.fail("a pooling window has no in-bounds tap (LiteRT fails on it)")
            self.register_buffer("count", torch.from_numpy(count)[None, :, :, None])
            self.register_buffer("half_count", torch.from_numpy(np.floor(count / 2))[None, :, :, None])

    def forward(self, x):
        samples = x.shape[0]
        x = flat(x)
        left, right, top, bottom = self.pad
        if self.average:
            xf = x.to(torch.float32)
            if any(self.pad):
                xf = F.pad(xf, (0, 0, left, right, top, bottom), value=0.0)
            acc = F.avg_pool2d(xf.permute(0, 3, 1, 2), self.kernel, self.stride, divisor_override=1)
            acc = acc.permute(0, 2, 3, 1)
            acc = acc + torch.where(acc > 0, self.half_count, -self.half_count)
            y = torch.div(acc, self.count, rounding_mode="trunc")
        else:
            if any(self.pad):
                x = F.pad(x, (0, 0, left, right, top, bottom), value=-128)
            y = F.max_pool2d(x.to(torch.float32).permute(0, 3, 1, 2), self.kernel, self.stride)
            y = y.permute(0, 2, 3, 1)
        return (unflat(y.clamp_(self.lo, self.hi).to(torch.int8), samples),)


@register("AVERAGE_POOL_2D")
def build_average_pool(op: OpInfo) -> PoolOp:
    return PoolOp(op, average=True)


@register("MAX_POOL_2D")
def build_max_pool(op: OpInfo) -> PoolOp:
    return PoolOp(op, average=False)
