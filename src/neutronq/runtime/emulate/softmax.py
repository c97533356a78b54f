"""SOFTMAX int8 -> int8 over the last axis, as LiteRT's reference kernel computes it.

With ``OpResolverType.BUILTIN_REF`` the int8 softmax is ``reference_ops::Softmax`` (no lookup
table; the LUT variants are the optimized kernel's): gemmlowp fixed point throughout.

* Prepare (``PreprocessSoftmaxScaling``, ``CalculateInputRadius``, 5 integer bits for the scaled
  difference): ``real = min(beta * s_in * 2^26, 2^31 - 1)`` (double),
  ``M, l = QuantizeMultiplierGreaterThanOne(real)``,
  ``diff_min = -floor((2^5 - 1) * 2^26 / 2^l)``.
* Per row: ``d = x - max(row)`` (in [-255, 0]); taps with ``d < diff_min`` output -128 and are left
  out of the sum. Otherwise ``e(d) = exp_on_negative_values(FixedPoint<5>(SRDHM(d * 2^l, M)))``
  (a ``FixedPoint<0>`` raw value); ``sum = sum of RoundingDivideByPOT(e(d), 12)`` (Q12);
  ``GetReciprocal(sum, 12)``: ``h = clz(sum)``, ``n = 12 - h``,
  ``scale = one_over_one_plus_x_for_x_in_0_1((sum << h) - 2^31)``; the output is
  ``clamp(RoundingDivideByPOT(SRDHM(scale, e(d)), n + 31 - 8) - 128, -128, 127)``.

``e(d)`` depends on the int8 difference only, so it is a 256-entry table computed here with
scalar gemmlowp arithmetic; the per-row reciprocal and the outputs are int64 tensor ops.
The output parameters are not read (Prepare requires zero point -128 and scale 1/256).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neutronq.runtime.emulate.base import EmulatedOp, OpInfo, register
from neutronq.runtime.emulate.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    quantize_multiplier_greater_than_one,
    rdbp,
    rdbp_scalar,
    srdhm,
    srdhm_scalar,
)

__all__ = ["SoftmaxOp", "exp_on_negative_values", "one_over_one_plus_x_for_x_in_0_1"]


def _sat_shift_left(raw: int, exponent: int) -> int:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<+exponent>`` on int32."""
    threshold = (1 << (31 - exponent)) - 1
    if raw > threshold:
        return INT32_MAX
    if raw < -threshold:
        return INT32_MIN
    return raw * (1 << exponent)


def _wrap(v: int) -> int:
    return ((v + 2**31) % 2**32) - 2**31


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: int) -> int:
    constant_term = 1895147668  # exp(-1/8), Q0.31
    constant_1_over_3 = 715827883
    x = _wrap(a + (1 << 28))  # a + 1/8
    x2 = srdhm_scalar(x, x)
    x3 = srdhm_scalar(x2, x)
    x4 = srdhm_scalar(x2, x2)
    x4_over_4 = rdbp_scalar(x4, 2)
    poly = rdbp_scalar(_wrap(srdhm_scalar(_wrap(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return _wrap(constant_term + srdhm_scalar(constant_term, _wrap(x + poly)))


def exp_on_negative_values(a: int, integer_bits: int) -> int:
    """gemmlowp ``exp_on_negative_values`` of a ``FixedPoint<int32, integer_bits>`` raw value
    (``a <= 0``); the result is a ``FixedPoint<int32, 0>`` raw value."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _sat_shift_left(a_mod_quarter_minus_one_quarter, integer_bits))  # Rescale<0>
    remainder = _wrap(a_mod_quarter_minus_one_quarter - a)
    barrel = [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
              (3, 720401), (4, 242)]
    for exponent, multiplier in barrel:
        if integer_bits > exponent:
            shift = fractional_bits + exponent
            if remainder & (1 << shift):
                result = srdhm_scalar(result, multiplier)
    if integer_bits > 5:
        clamp_b = 36 - integer_bits
        if a < -(1 << clamp_b):
            result = 0
    if a == 0:
        result = INT32_MAX
    return result


def _sat_shift_left_t(raw: torch.Tensor, exponent: int) -> torch.Tensor:
    threshold = (1 << (31 - exponent)) - 1
    out = raw * (1 << exponent)
    out = torch.where(raw > threshold, torch.full_like(raw, INT32_MAX), out)
    return torch.where(raw < -threshold, torch.full_like(raw, INT32_MIN), out)


def one_over_one_plus_x_for_x_in_0_1(a: torch.Tensor) -> torch.Tensor:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1`` (Newton-Raphson, three steps) on int64
    tensors of ``FixedPoint<int32, 0>`` raw values."""
    one_f0 = INT32_MAX
    total = a + one_f0  # RoundingHalfSum: (a + b + sign) / 2, C++ division
    half_denominator = torch.where(total >= 0, total + 1, total - 1)
    half_denominator = torch.sign(half_denominator) * (half_denominator.abs() // 2)
    constant_48_over_17 = 1515870810  # Q2.29
    constant_neg_32_over_17 = -1010580540
    x = constant_48_over_17 + srdhm(half_denominator, constant_neg_32_over_17)
    one_f2 = 1 << 29  # F2::One(): 29 fractional bits
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = one_f2 - half_denominator_times_x
        x = x + _sat_shift_left_t(srdhm(x, one_minus), 2)  # Rescale<2> of a Q4 product
    return _sat_shift_left_t(x, 1)  # Rescale<0>(ExactMulByPot<-1>(x))


def _clz32(v: torch.Tensor) -> torch.Tensor:
    """Leading zeros of positive int32 values held in an int64 tensor (``frexp`` of the exact
    float64 value: ``v = m * 2^k`` with ``m`` in [0.5, 1) has ``32 - k`` leading zeros)."""
    _, exponent = torch.frexp(v.to(torch.float64))
    return 32 - exponent.to(torch.int64)


class SoftmaxOp(EmulatedOp):
    def __init__(self, op: OpInfo):
        super().__init__(op)
        x, out = op.inputs[0], op.outputs[0]
        op.require_int8(x, out)
        if out.zero_point != -128 or abs(float(out.scale) - 1 / 256) > 0.001 / 256:
            raise op.fail("int8 SOFTMAX needs output zero point -128 and scale 1/256 (LiteRT refuses others)")
        beta = float(np.float32(op.option("beta", 1.0)))
        real = min(beta * float(x.scale) * float(1 << 26), float((1 << 31) - 1))
        multiplier, left_shift = quantize_multiplier_greater_than_one(real)
        diff_min = -math.floor(31 * (1 << 26) / (1 << left_shift))
        exp = np.zeros(256, np.int64)  # index: d + 255, d in [-255, 0]
        exp_q12 = np.zeros(256, np.int64)
        for d in range(-255, 1):
            if d >= diff_min:
                rescaled = srdhm_scalar(_wrap(d * (1 << left_shift)), multiplier)
                e = exp_on_negative_values(rescaled, 5)
                exp[d + 255] = e
                exp_q12[d + 255] = rdbp_scalar(e, 12)
        self.register_buffer("exp", torch.from_numpy(exp))
        self.register_buffer("exp_q12", torch.from_numpy(exp_q12))
        self.register_buffer("valid", torch.from_numpy(np.arange(-255, 1) >= diff_min))

    def forward(self, x):
        xi = x.to(torch.int64)
        d = xi - xi.amax(dim=-1, keepdim=True) + 255
        e = self.exp[d]
        total = self.exp_q12[d].sum(dim=-1, keepdim=True)  # >= 2^19: the row maximum contributes
        headroom = _clz32(total)
        bits_over_unit = 12 - headroom
        shifted_sum_minus_one = ((total << headroom) & 0xFFFFFFFF) - (1 << 31)
        scale = one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one)
        y = rdbp(srdhm(scale, e), bits_over_unit + 31 - 8) - 128
        y = torch.where(self.valid[d], y.clamp(-128, 127), torch.full_like(y, -128))
        return (y.to(torch.int8),)


register("SOFTMAX")(SoftmaxOp)
