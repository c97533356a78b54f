"""Element-wise int8 ops as lookup tables built from the reference kernel's own integer rule.

An int8 op of one int8 operand is a function of 256 values, of two operands of 65,536 pairs:
the table is computed once (at build time, int64 tensors, the reference formulas below) and the
batched forward pass is a gather. Broadcasting is numpy's (TFLite's ``Broadcast*Slow``).

Reference rules (LiteRT 2.3 ``tflite/kernels``; ``M, e = QuantizeMultiplier(...)``; ``mbqm`` is
``MultiplyByQuantizedMultiplier``, double rounding; outputs clamped to the fused activation's
int8 range):

* ADD / SUB (``add.cc``, ``sub.cc``, ``reference_integer_ops::AddFunc``, ``SubElementwise``):
  ``left_shift = 20``; ``twice_max = 2 * max(s1, s2)`` (float), input multipliers
  ``double(s_i) / twice_max``, output multiplier ``twice_max / double((1 << 20) * s_out)``, all via
  ``QuantizeMultiplierSmallerThanOneExp``;
  ``out = mbqm(mbqm((x - z1) << 20, M1, e1) +/- mbqm((y - z2) << 20, M2, e2), Mo, eo) + zo``.
  SUB allows an output multiplier > 1 in Prepare but then shifts by a negative amount at run
  time (undefined in C++): refused here.
* MUL (``mul.cc``): the multiplier is ``s1 * s2 / s_out`` computed in **float** (C++ ``float``
  operands), then ``QuantizeMultiplier``; ``out = mbqm((x - z1) * (y - z2), M, e) + zo``.
* MAXIMUM / MINIMUM: the raw int8 values compared (no rescaling; the converter gives the
  operands and output one set of parameters).
* SQUARED_DIFFERENCE (``squared_difference.cc``): ``left_shift = 7``,
  ``twice_max = 2 * max(s1, s2)``, input multipliers ``double(s_i) / twice_max``, output
  multiplier ``twice_max^2 / ((1 << 14) * double(s_out))``;
  ``d = mbqm((x - z1) << 7, M1, e1) - mbqm((y - z2) << 7, M2, e2)``,
  ``out = mbqm(d * d, Mo, eo) + zo``.

One-operand rules:

* QUANTIZE int8 -> int8 (``quantize.cc``, ``reference_ops::Requantize``):
  ``mbqm(x - zi, QuantizeMultiplier(double(si) / double(so))) + zo``.
* RELU / RELU6 / RELU_N1_TO_1 / RELU_0_TO_1 (``activations.cc`` ``QuantizedReluX``):
  ``mbqm(x - zi, QuantizeMultiplier(si / so)) + zo`` (the ratio in float), clamped to
  ``zo + roundf(lo / so)`` .. ``zo + roundf(hi / so)`` within int8.
* ABS (``elementwise.cc``): ``|x - zi| + zo`` when the scales are equal, else
  ``mbqm(|x - zi|, QuantizeMultiplier(si / so)) + zo`` (the ratio in float).
* LOGISTIC, TANH (``activations.cc``, ``LUTPopulate<int8_t>``): LiteRT itself uses a 256-entry
  table: for each int8 ``v``, ``f(si * (v - zi))`` in float (``1 / (1 + expf(-x))``, ``tanhf``),
  times ``1 / so`` (float), ``roundf``, ``+ zo``, clamped. The table is rebuilt here the same way
  with the C library's ``expf`` / ``tanhf`` (``fixedpoint.libm_f32``), as LiteRT calls them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from ai_edge_litert import schema_py_generated as tfl

from neutronq.runtime.emulate.base import EmulatedOp, OpInfo, TensorInfo, activation_range, register
from neutronq.runtime.emulate.fixedpoint import (
    f32,
    libm_f32,
    mbqm,
    quantize_multiplier,
    quantize_multiplier_smaller_than_one_exp,
    round_half_away_f32,
)

__all__ = ["UnaryLUTOp", "BinaryLUTOp", "lut_populate_int8", "binary_table", "unary_table"]

_VALUES = torch.arange(-128, 128, dtype=torch.int64)


def unary_table(fn: Callable[[torch.Tensor], torch.Tensor], lo: int = -128, hi: int = 127) -> np.ndarray:
    """int8 table of ``fn`` over the 256 int8 values (index ``v + 128``), clamped to [lo, hi]."""
    return fn(_VALUES.clone()).clamp(lo, hi).numpy().astype(np.int8)


def binary_table(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lo: int = -128,
                 hi: int = 127) -> np.ndarray:
    """int8 table ``[256, 256]`` of ``fn(x, y)`` over all int8 pairs (index ``[x + 128, y + 128]``)."""
    x = _VALUES[:, None].expand(256, 256).reshape(-1)
    y = _VALUES[None, :].expand(256, 256).reshape(-1)
    return fn(x, y).clamp(lo, hi).numpy().astype(np.int8).reshape(256, 256)


def lut_populate_int8(si: np.float32, zi: int, so: np.float32, zo: int,
                      transform: Callable[[np.float32], np.float32]) -> np.ndarray:
    """``LUTPopulateInt8`` (``internal/common.h``), in float as LiteRT computes it."""
    inverse = f32(f32(1.0) / f32(so))
    table = np.empty(256, np.int8)
    for v in range(-128, 128):
        dequantized = f32(f32(si) * f32(v - zi))
        transformed = f32(transform(dequantized))
        rescaled = round_half_away_f32(f32(transformed * inverse))
        quantized = int(f32(rescaled + f32(zo)))
        table[v + 128] = min(max(quantized, -128), 127)
    return table


def _uint8_order(table: np.ndarray) -> np.ndarray:
    """A table indexed by ``v + 128`` (per operand) re-indexed by ``uint8(v)`` (``v & 255``), the
    byte the int8 value is stored as: lookups then index with the raw bytes."""
    order = (np.arange(256) + 128) % 256  # uint8 byte b holds int8 value b - 256 * (b > 127)
    if table.ndim == 1:
        return table[order]
    return table[order][:, order]


def _byte_index(x: torch.Tensor) -> torch.Tensor:
    return x.view(torch.uint8).to(torch.int32)


class UnaryLUTOp(EmulatedOp):
    """An int8 -> int8 function of one dynamic tensor, as a 256-entry table."""

    def __init__(self, op: OpInfo, table: np.ndarray):
        super().__init__(op)
        self.register_buffer("table", torch.from_numpy(_uint8_order(np.ascontiguousarray(table, np.int8))))
        self.out_shape = op.outputs[0].shape

    def forward(self, x):
        y = self.table[_byte_index(x)]
        return (y.reshape(x.shape[0], *self.out_shape),)


class BinaryLUTOp(EmulatedOp):
    """An int8 function of two int8 operands (broadcast), as a 65,536-entry table."""

    def __init__(self, op: OpInfo, table: np.ndarray):
        super().__init__(op)
        self.register_buffer("table", torch.from_numpy(
            _uint8_order(np.ascontiguousarray(table, np.int8).reshape(256, 256)).reshape(-1)))
        a, b = op.inputs[0], op.inputs[1]
        self.rank = max(a.rank, b.rank)
        for k, t in enumerate((a, b)):
            if t.is_const:
                c = _byte_index(torch.from_numpy(np.ascontiguousarray(t.data).astype(np.int8)))
                if k == 0:
                    c = c * 256
                self.register_buffer(f"const{k}", c.reshape(1, *([1] * (self.rank - t.rank)), *t.shape))
        self.const_mask = (a.is_const, b.is_const)
        self.ranks = (a.rank, b.rank)
        self.out_shape = op.outputs[0].shape

    def _operand(self, k, it):
        if self.const_mask[k]:
            return getattr(self, f"const{k}")
        x = next(it)
        missing = self.rank - self.ranks[k]
        if missing:
            x = x.reshape(x.shape[0], *([1] * missing), *x.shape[1:])
        i = _byte_index(x)
        return i.bitwise_left_shift_(8) if k == 0 else i

    def forward(self, *xs):
        it = iter(xs)
        a = self._operand(0, it)
        b = self._operand(1, it)
        samples = xs[0].shape[0] if xs else 1
        y = self.table[a | b if a.shape == b.shape else a + b]
        return (y.expand(samples, *self.out_shape) if y.shape[0] != samples else y,)


# ----------------------------------------------------------------------------------------------
# two operands
# ----------------------------------------------------------------------------------------------
def _operands(op: OpInfo) -> tuple[TensorInfo, TensorInfo, TensorInfo]:
    if len(op.inputs) != 2 or any(t is None for t in op.inputs):
        raise op.fail("expects two inputs")
    a, b, out = op.inputs[0], op.inputs[1], op.outputs[0]
    op.require_int8(a, b, out)
    return a, b, out


def _add_sub_rule(op: OpInfo, sign: int):
    a, b, out = _operands(op)
    s1, s2, so = a.scale, b.scale, out.scale
    twice_max = float(f32(2 * max(s1, s2)))
    m1, e1 = quantize_multiplier_smaller_than_one_exp(float(s1) / twice_max)
    m2, e2 = quantize_multiplier_smaller_than_one_exp(float(s2) / twice_max)
    real_out = twice_max / float(f32(f32(1 << 20) * so))
    if real_out >= 1.0:
        raise op.fail(f"output multiplier {real_out} >= 1: TFLite refuses it (ADD) or shifts by a "
                      "negative amount (SUB, undefined behaviour)")
    mo, eo = quantize_multiplier_smaller_than_one_exp(real_out)
    z1, z2, zo = a.zero_point, b.zero_point, out.zero_point

    def rule(x, y):
        v1 = mbqm((x - z1) * (1 << 20), m1, e1)
        v2 = mbqm((y - z2) * (1 << 20), m2, e2)
        return mbqm(v1 + sign * v2, mo, eo) + zo

    return rule


@register("ADD")
def build_add(op: OpInfo) -> BinaryLUTOp:
    lo, hi = activation_range(op, op.outputs[0])
    return BinaryLUTOp(op, binary_table(_add_sub_rule(op, +1), lo, hi))


@register("SUB")
def build_sub(op: OpInfo) -> BinaryLUTOp:
    lo, hi = activation_range(op, op.outputs[0])
    return BinaryLUTOp(op, binary_table(_add_sub_rule(op, -1), lo, hi))


@register("MUL")
def build_mul(op: OpInfo) -> BinaryLUTOp:
    a, b, out = _operands(op)
    real = float(f32(f32(a.scale * b.scale) / out.scale))  # float arithmetic, as mul.cc
    m, e = quantize_multiplier(real)
    z1, z2, zo = a.zero_point, b.zero_point, out.zero_point
    lo, hi = activation_range(op, out)
    return BinaryLUTOp(op, binary_table(lambda x, y: mbqm((x - z1) * (y - z2), m, e) + zo, lo, hi))


@register("MAXIMUM")
def build_maximum(op: OpInfo) -> BinaryLUTOp:
    _operands(op)
    return BinaryLUTOp(op, binary_table(torch.maximum))


@register("MINIMUM")
def build_minimum(op: OpInfo) -> BinaryLUTOp:
    _operands(op)
    return BinaryLUTOp(op, binary_table(torch.minimum))


@register("SQUARED_DIFFERENCE")
def build_squared_difference(op: OpInfo) -> BinaryLUTOp:
    a, b, out = _operands(op)
    s1, s2, so = a.scale, b.scale, out.scale
    twice_max = float(f32(2 * max(s1, s2)))
    m1, e1 = quantize_multiplier(float(s1) / twice_max)
    m2, e2 = quantize_multiplier(float(s2) / twice_max)
    mo, eo = quantize_multiplier(twice_max * twice_max / ((1 << 14) * float(so)))
    z1, z2, zo = a.zero_point, b.zero_point, out.zero_point

    def rule(x, y):
        d = mbqm((x - z1) * (1 << 7), m1, e1) - mbqm((y - z2) * (1 << 7), m2, e2)
        return mbqm(d * d, mo, eo) + zo

    lo, hi = activation_range(op, out, tfl.ActivationFunctionType.NONE)
    return BinaryLUTOp(op, binary_table(rule, lo, hi))


# ----------------------------------------------------------------------------------------------
# one operand
# ----------------------------------------------------------------------------------------------
def _unary(op: OpInfo) -> tuple[TensorInfo, TensorInfo]:
    x, out = op.inputs[0], op.outputs[0]
    if x is None or x.is_const:
        raise op.fail("expects one non-constant input")
    op.require_int8(x, out)
    return x, out


@register("QUANTIZE")
def build_quantize(op: OpInfo) -> UnaryLUTOp:
    x, out = op.inputs[0], op.outputs[0]
    if x.dtype != torch.int8 or out.dtype != torch.int8:
        raise op.fail(f"only int8 -> int8 requantization is emulated ({x.type_name} -> {out.type_name})")
    m, e = quantize_multiplier(float(x.scale) / float(out.scale))
    zi, zo = x.zero_point, out.zero_point
    return UnaryLUTOp(op, unary_table(lambda v: mbqm(v - zi, m, e) + zo))


def _relu_x(act_min: float, act_max: float):
    def build(op: OpInfo) -> UnaryLUTOp:
        x, out = _unary(op)
        m, e = quantize_multiplier(float(f32(x.scale / out.scale)))
        zi, zo = x.zero_point, out.zero_point
        lo = max(-128, zo + int(round_half_away_f32(f32(f32(act_min) / out.scale))))
        hi = 127 if act_max == float("inf") else min(
            127, zo + int(round_half_away_f32(f32(f32(act_max) / out.scale))))
        return UnaryLUTOp(op, unary_table(lambda v: (mbqm(v - zi, m, e) + zo).clamp(lo, hi)))

    return build


register("RELU")(_relu_x(0.0, float("inf")))
register("RELU6")(_relu_x(0.0, 6.0))
register("RELU_N1_TO_1")(_relu_x(-1.0, 1.0))
register("RELU_0_TO_1")(_relu_x(0.0, 1.0))


@register("ABS")
def build_abs(op: OpInfo) -> UnaryLUTOp:
    x, out = _unary(op)
    zi, zo = x.zero_point, out.zero_point
    if x.scale == out.scale:
        return UnaryLUTOp(op, unary_table(lambda v: (v - zi).abs() + zo))
    m, e = quantize_multiplier(float(f32(x.scale / out.scale)))
    return UnaryLUTOp(op, unary_table(lambda v: mbqm((v - zi).abs(), m, e) + zo))


@register("LOGISTIC")
def build_logistic(op: OpInfo) -> UnaryLUTOp:
    x, out = _unary(op)
    if out.scale != f32(1.0 / 256):
        raise op.fail("int8 LOGISTIC needs an output scale of 1/256 (LiteRT refuses others)")
    one = f32(1.0)
    fn = lambda v: f32(one / f32(one + libm_f32("expf", -v)))  # noqa: E731
    return UnaryLUTOp(op, lut_populate_int8(x.scale, x.zero_point, out.scale, out.zero_point, fn))


@register("TANH")
def build_tanh(op: OpInfo) -> UnaryLUTOp:
    x, out = _unary(op)
    fn = lambda v: libm_f32("tanhf", v)  # noqa: E731
    return UnaryLUTOp(op, lut_populate_int8(x.scale, x.zero_point, out.scale, out.zero_point, fn))
