"""MEAN (and the other int8 reductions) over constant axes.

MEAN int8 (``reduce.cc`` Prepare, ``reference_ops::QuantizedMeanOrSum`` with ``compute_sum =
false``): ``M, e = QuantizeMultiplier(double(s_in) / double(s_out))``; with ``N`` the number of
reduced elements, the reference folds ``1/N`` into the multiplier *without renormalising it*:
``k = min(floor(log2 N), 32, 31 + e)``, ``M' = (int64(M) << k) / N`` (integer division),
``e' = e - k``. Each output is
``clamp(MultiplyByQuantizedMultiplier(int32(sum(x) - zp_in * N), M', e') + zp_out, -128, 127)``,
``sum(x)`` being the sum of the raw int8 values. No fused activation.
"""

from __future__ import annotations

import numpy as np
import torch

from neutronq.runtime.emulate.base import EmulatedOp, OpInfo, register
from neutronq.runtime.emulate.fixedpoint import mbqm, quantize_multiplier, wrap_int32

__all__ = ["ReduceOp", "reduce_axes"]


def reduce_axes(op: OpInfo) -> list[int]:
    x, axes = op.inputs[0], op.inputs[1]
    if axes is None or not axes.is_const:
        raise op.fail("the reduction axes must be a constant")
    rank = x.rank
    out = sorted({int(a) % rank for a in np.asarray(axes.data).reshape(-1)}) if rank else []
    return out


class ReduceOp(EmulatedOp):
    def __init__(self, op: OpInfo, kind: str, multiplier: int = 0, shift: int = 0):
        super().__init__(op)
        x, out = op.inputs[0], op.outputs[0]
        op.require_int8(x, out)
        self.axes = [a + 1 for a in reduce_axes(op)]  # after the sample axis
        self.count = int(np.prod([x.shape[a - 1] for a in self.axes])) if self.axes else 1
        self.kind = kind
        self.zp_in, self.zp_out = x.zero_point, out.zero_point
        self.multiplier, self.shift = multiplier, shift
        self.out_shape = out.shape

    def forward(self, x):
        samples = x.shape[0]
        if self.kind in ("max", "min"):
            y = x
            for a in sorted(self.axes, reverse=True):
                y = y.amax(dim=a) if self.kind == "max" else y.amin(dim=a)
            return (y.reshape(samples, *self.out_shape),)
        total = x.to(torch.int64).sum(dim=self.axes) if self.axes else x.to(torch.int64)
        shifted = wrap_int32(total - self.zp_in * self.count)
        y = mbqm(shifted, self.multiplier, self.shift) + self.zp_out
        return (y.clamp_(-128, 127).to(torch.int8).reshape(samples, *self.out_shape),)


@register("MEAN")
def build_mean(op: OpInfo) -> ReduceOp:
    x, out = op.inputs[0], op.outputs[0]
    m, e = quantize_multiplier(float(x.scale) / float(out.scale))
    count = int(np.prod([x.shape[a] for a in reduce_axes(op)])) if x.rank else 1
    if count > 0:
        k = min(count.bit_length() - 1, 32, 31 + e)
        m = (m << k) // count
        e = e - k
    return ReduceOp(op, "mean", m, e)


@register("REDUCE_MAX")
def build_reduce_max(op: OpInfo) -> ReduceOp:
    return ReduceOp(op, "max")


@register("REDUCE_MIN")
def build_reduce_min(op: OpInfo) -> ReduceOp:
    return ReduceOp(op, "min")


class SumOp(ReduceOp):
    """SUM int8 with the reference kernel (``reduce.cc`` ``QuantizedMeanOrSum<int8_t,
    kReference>``): it calls ``reference_ops::QuantizedMeanOrSum`` on the tensors' bytes *as
    uint8*: the sum is of ``x & 255``, the zero points are used as they are, and the result is
    clamped to [0, 255] and stored as that byte. Multiplier ``QuantizeMultiplier(double(s_in) /
    double(s_out))``, no folding of the element count."""

    def forward(self, x):
        samples = x.shape[0]
        total = x.view(torch.uint8).to(torch.int64).sum(dim=self.axes) if self.axes else \
            x.view(torch.uint8).to(torch.int64)
        shifted = wrap_int32(total - self.zp_in * self.count)
        y = mbqm(shifted, self.multiplier, self.shift) + self.zp_out
        y = y.clamp_(0, 255).to(torch.uint8).view(torch.int8)
        return (y.reshape(samples, *self.out_shape),)


@register("SUM")
def build_sum(op: OpInfo) -> SumOp:
    x, out = op.inputs[0], op.outputs[0]
    m, e = quantize_multiplier(float(x.scale) / float(out.scale))
    return SumOp(op, "sum", m, e)
