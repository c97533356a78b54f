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

from neutronq.runtime.emulate.base import (
    EmulatedOp,
    OpInfo,
    TensorInfo,
    activation_range,
    register,
)
from neutronq.runtime.emulate.fixedpoint import (
    INT32_MAX,
    f32,
    libm_f32,
    mbqm,
    mbqm_scalar,
    quantize_multiplier,
    quantize_multiplier_smaller_than_one_exp,
    rdbp,
    rdbp_scalar,
    round_half_away_f32,
    srdhm,
    srdhm_scalar,
    wrap_int32,
)
from neutronq.runtime.emulate.softmax import _clz32, one_over_one_plus_x_for_x_in_0_1

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


# ----------------------------------------------------------------------------------------------
# more one-operand ops
# ----------------------------------------------------------------------------------------------
def _lut_op(fn_of_float):
    """An op whose int8 kernel is LiteRT's own ``LUTPopulate<int8_t>`` table of a float function."""

    def build(op: OpInfo) -> UnaryLUTOp:
        x, out = _unary(op)
        return UnaryLUTOp(op, lut_populate_int8(x.scale, x.zero_point, out.scale, out.zero_point,
                                                fn_of_float(op, x, out)))

    return build


register("EXP")(_lut_op(lambda op, x, out: lambda v: libm_f32("expf", v)))


def _log_fn(op, x, out):
    # elementwise.cc LogLUTPrepare: log(v), and the lowest output value for v <= 0
    output_min = f32(f32(-128 - out.zero_point) * out.scale)
    return lambda v: output_min if v <= f32(0) else libm_f32("logf", v)


register("LOG")(_lut_op(_log_fn))


def _gelu_fn(op, x, out):
    half = f32(0.5)
    if op.option("approximate", False):
        sqrt_2_over_pi = f32(1.1283791670955126 * 0.7071067811865476)  # M_2_SQRTPI * M_SQRT1_2
        c = f32(0.044715)
        return lambda v: f32(f32(half * v) * f32(f32(1) + libm_f32(
            "tanhf", f32(sqrt_2_over_pi * f32(v + f32(f32(f32(c * v) * v) * v))))))
    neg_sqrt1_2 = f32(-0.7071067811865476)  # static_cast<float>(-M_SQRT1_2)
    return lambda v: f32(f32(half * v) * libm_f32("erfcf", f32(v * neg_sqrt1_2)))


register("GELU")(_lut_op(_gelu_fn))


@register("NEG")
def build_neg(op: OpInfo) -> UnaryLUTOp:
    """``reference_ops::Negate``: the raw int8 value negated (no zero point; -(-128) wraps)."""
    _unary(op)
    return UnaryLUTOp(op, unary_table(lambda v: ((-v + 128) & 255) - 128))


def _srdhm16(a: int, b: int) -> int:
    if a == b == -32768:
        return 32767
    ab = a * b
    n = ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14))
    q = abs(n) // (1 << 15)
    return q if n >= 0 else -q


def _sat_shift16(v: int, amount: int) -> int:
    return max(min(v * (1 << amount), 32767), -32768)


def _wrap16(v: int) -> int:
    return ((v + 32768) & 0xFFFF) - 32768


def _rdbp16(x: int, exponent: int) -> int:
    """gemmlowp ``RoundingDivideByPOT<int16_t>``: the mask ``(1ll << e) - 1`` is narrowed to int16
    (-1 once ``e >= 16``, so any value then rounds to -1 or +1 by its sign, as LiteRT computes
    it) and the shift acts on the int-promoted value."""
    mask = _wrap16((1 << exponent) - 1)
    remainder = _wrap16(x & mask)
    threshold = _wrap16((mask >> 1) + (1 if x < 0 else 0))
    return _wrap16((x >> exponent) + (1 if remainder > threshold else 0))


@register("HARD_SWISH")
def build_hard_swish(op: OpInfo) -> UnaryLUTOp:
    """``reference_ops::HardSwish`` (int16 fixed point): Prepare in float
    (``hires = s_in / 128``, ``reluish = 3 / 32768``), multipliers from ``QuantizeMultiplier``
    reduced to 16 bits (``DownScaleInt32ToInt16Multiplier``)."""
    x, out = _unary(op)
    hires = f32(f32(1.0 / 128.0) * x.scale)
    out_mult, out_exp = quantize_multiplier(float(f32(hires / out.scale)))
    rel_mult, rel_exp = quantize_multiplier(float(f32(hires / f32(f32(3.0) / f32(32768.0)))))

    def down16(m: int) -> int:
        return 32767 if m >= 2**31 - 1 - (1 << 15) else (m + (1 << 15)) >> 16

    out16, rel16 = down16(out_mult), down16(rel_mult)
    if out_exp > 0:
        raise op.fail("output multiplier exponent > 0: LiteRT refuses it")
    zi, zo = x.zero_point, out.zero_point
    table = np.empty(256, np.int8)
    for v in range(-128, 128):
        value = _wrap16(v - zi)
        hires_value = _wrap16(value * 128)
        preshift_out = _srdhm16(hires_value, out16)
        reluish = hires_value
        if rel_exp > 0:
            reluish = _sat_shift16(reluish, rel_exp - 1)
        reluish = _srdhm16(reluish, rel16)
        if rel_exp > 0:
            reluish = _sat_shift16(reluish, 1)
        if rel_exp < 0:
            reluish = _rdbp16(reluish, -rel_exp)
        reluish = (reluish + (1 << 15)) >> 1
        prod = reluish * preshift_out
        preshift_output = 32767 if reluish == preshift_out == -32768 else \
            (abs(prod) // (1 << 15)) * (1 if prod >= 0 else -1)
        y = _wrap16(_rdbp16(_wrap16(preshift_output), -out_exp) + zo)
        table[v + 128] = min(max(y, -128), 127)
    return UnaryLUTOp(op, table)


@register("LEAKY_RELU")
def build_leaky_relu(op: OpInfo) -> UnaryLUTOp:
    """``reference_ops::QuantizeLeakyRelu``: multipliers ``s_in * alpha / s_out`` and
    ``s_in / s_out`` computed in float; a negative alpha multiplies by ``|M|`` and negates."""
    x, out = _unary(op)
    alpha = f32(op.option("alpha", 0.0))
    m_alpha, e_alpha = quantize_multiplier(float(f32(f32(x.scale * alpha) / out.scale)))
    m_id, e_id = quantize_multiplier(float(f32(x.scale / out.scale)))
    negative = m_alpha < 0
    zi, zo = x.zero_point, out.zero_point

    def rule(v):
        value = v - zi
        pos = mbqm(value, m_id, e_id)
        neg = mbqm(value, abs(m_alpha), e_alpha)
        return torch.where(value >= 0, pos, -neg if negative else neg) + zo

    return UnaryLUTOp(op, unary_table(rule))


@register("SQRT")
def build_sqrt(op: OpInfo) -> UnaryLUTOp:
    """elementwise.cc, int8 ``Sqrt``: the input dequantized in float (``s_in * (x - z_in)``),
    ``sqrtf``, divided by ``s_out`` in float and converted to int by truncation (not rounding:
    measured against LiteRT), ``+ z_out``, clamped. Inputs below the zero point make LiteRT fail
    the run (the table holds the output zero point there)."""

    x, out = _unary(op)
    zi, zo = x.zero_point, out.zero_point
    table = np.full(256, min(max(zo, -128), 127), np.int8)
    for v in range(zi, 128):
        root = libm_f32("sqrtf", f32(f32(x.scale) * f32(v - zi)))
        y = int(f32(root / f32(out.scale))) + zo
        table[v + 128] = min(max(y, -128), 127)
    return UnaryLUTOp(op, table)


@register("RSQRT")
def build_rsqrt(op: OpInfo) -> UnaryLUTOp:
    """elementwise.cc ``RsqrtEvalQuantizedInt8``: ``GetInvSqrtQuantizedMultiplierExp`` of the
    input (gemmlowp Newton-Raphson), rescaled with ``QuantizeMultiplier(1 / (sqrtf(s_in) * s_out))``
    through a 2^20 intermediate; an input at the zero point gives 127. Inputs below the zero point
    make LiteRT fail the run (the table holds 127 there)."""

    x, out = _unary(op)
    m, e = quantize_multiplier(1.0 / float(f32(libm_f32("sqrtf", x.scale) * out.scale)))
    zi, zo = x.zero_point, out.zero_point
    table = np.full(256, 127, np.int8)
    for v in range(-128, 128):
        value = v - zi
        if value <= 0:
            continue
        inv, shift = _inv_sqrt_multiplier_exp(value)
        data = mbqm_scalar(1, inv, shift + 20)
        y = mbqm_scalar(data, m, e - 20) + zo
        table[v + 128] = min(max(y, -128), 127)
    return UnaryLUTOp(op, table)


def _inv_sqrt_multiplier_exp(value: int) -> tuple[int, int]:
    """``GetInvSqrtQuantizedMultiplierExp(value, kReverseShift = -1)`` (``internal/common.h``)."""

    if value <= 1:
        return INT32_MAX, 0
    shift = 11
    while value >= (1 << 29):
        value //= 4
        shift += 1
    clz = 32 - value.bit_length()
    pairs = (clz - 1) // 2 - 1
    shift -= pairs
    value <<= 2 * pairs
    # FixedPoint<int32, 3>: 28 fractional bits
    fx_input = value >> 1
    half_input = rdbp_scalar(fx_input, 1)
    half_three = (1 << 28) + (1 << 27)
    x = 1 << 28  # F3::One()

    def rescale_3(raw_f9: int) -> int:  # Rescale<3> of a product with 9 integer bits: << 6 saturating
        threshold = (1 << (31 - 6)) - 1
        if raw_f9 > threshold:
            return 2**31 - 1
        if raw_f9 < -threshold:
            return -(2**31)
        return raw_f9 * 64

    def rescale_3_from_6(raw_f6: int) -> int:  # Rescale<3> of a Q6 value: << 3 saturating
        threshold = (1 << (31 - 3)) - 1
        if raw_f6 > threshold:
            return 2**31 - 1
        if raw_f6 < -threshold:
            return -(2**31)
        return raw_f6 * 8

    for _ in range(5):
        x3 = rescale_3(srdhm_scalar(srdhm_scalar(x, x), x))
        diff = srdhm_scalar(half_three, x) - srdhm_scalar(half_input, x3)
        x = rescale_3_from_6(((diff + 2**31) % 2**32) - 2**31)
    x = srdhm_scalar(x, 1518500250)  # * sqrt(2) / 2, F3 * F0 -> F3
    if shift < 0:
        x = ((x << -shift) + 2**31) % 2**32 - 2**31
        shift = 0
    return x, -shift


# ----------------------------------------------------------------------------------------------
# more two-operand ops
# ----------------------------------------------------------------------------------------------
@register("PRELU")
def build_prelu(op: OpInfo) -> BinaryLUTOp:
    """``reference_ops::BroadcastPrelu4DSlow``: ``x >= zp`` -> ``mbqm(x - zp, s_in / s_out)``,
    else ``mbqm((x - zp) * (alpha - zp_alpha), s_in * s_alpha / s_out)`` (ratios in float)."""
    a, b, out = _operands(op)
    m1, e1 = quantize_multiplier(float(f32(a.scale / out.scale)))
    m2, e2 = quantize_multiplier(float(f32(f32(a.scale * b.scale) / out.scale)))
    za, zb, zo = a.zero_point, b.zero_point, out.zero_point

    def rule(x, alpha):
        v = x - za
        return torch.where(v >= 0, mbqm(v, m1, e1), mbqm(v * (alpha - zb), m2, e2)) + zo

    return BinaryLUTOp(op, binary_table(rule))


def _rdbp_beyond_31(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """gemmlowp ``RoundingDivideByPOT`` of an int32 by 32..63, as LiteRT's x86-64 build computes
    it (undefined in C++): the mask ``(1ll << e) - 1`` narrowed to int32 is -1, and the int32 shift
    ``x >> e`` uses ``e & 31`` (SAR). DIV reaches it when a small dividend meets a large divisor."""
    threshold = -1 + (x < 0).to(torch.int64)
    return torch.bitwise_right_shift(x, exponent & 31) + (x > threshold).to(torch.int64)


@register("DIV")
def build_div(op: OpInfo) -> BinaryLUTOp:
    """``reference_ops::Div`` (int8): ``QuantizeMultiplier(s1 / (s2 * s_out))`` in float; per
    element the divisor's reciprocal by ``GetReciprocal(d, 31)``, the dividend normalised by its
    leading sign bits, then ``MultiplyByQuantizedMultiplierSmallerThanOneExp``, whose right shift
    often exceeds 31 (small dividend, large divisor): C++ leaves that undefined and LiteRT's x86-64
    build computes what ``_rdbp_beyond_31`` does. A divisor at its zero point is undefined in
    LiteRT (the table holds 0 there)."""

    a, b, out = _operands(op)
    m, e = quantize_multiplier(float(f32(a.scale / f32(b.scale * out.scale))))
    za, zb, zo = a.zero_point, b.zero_point, out.zero_point
    lo, hi = activation_range(op, out)

    def rule(x, y):
        n = x - za
        d = y - zb
        zero = d == 0
        d = torch.where(zero, torch.ones_like(d), d)
        n = torch.where(d < 0, -n, n)
        d = d.abs()
        clz = _clz32(d)
        recip_shift = 31 - clz
        inv = one_over_one_plus_x_for_x_in_0_1(((d << clz) & 0xFFFFFFFF) - (1 << 31))
        # CountLeadingSignBits(n): clz(n) - 1 for n >= 0, clz(~n) - 1 for n < 0; 31 for 0
        ones = torch.where(n >= 0, n, ~n)
        headroom = torch.where(ones == 0, torch.full_like(n, 31), _clz32(ones.clamp(min=1)) - 1)
        unscaled = srdhm(wrap_int32(n << headroom), inv)
        right = -(e - recip_shift - headroom)
        t = srdhm(unscaled, m)
        y_ = torch.where(right > 31, _rdbp_beyond_31(t, right), rdbp(t, right.clamp(0, 31))) + zo
        return torch.where(zero, torch.zeros_like(y_), y_)

    return BinaryLUTOp(op, binary_table(rule, lo, hi))
