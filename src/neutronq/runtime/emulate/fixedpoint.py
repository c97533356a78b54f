"""TFLite's fixed-point arithmetic, written from its documented behaviour, as Python scalars (for
parameters computed once) and as int64 PyTorch tensors (for tables and batched kernels).

Facts these functions reproduce (LiteRT 2.3, ``tflite/kernels/internal``; built without
``TFLITE_SINGLE_ROUNDING``, the default, so every requantization rounds twice):

* ``QuantizeMultiplier(double m)``: ``q, e = frexp(m)`` (q in [0.5, 1)), ``M = round(q * 2^31)``
  with ``std::round`` (half away from zero); ``M == 2^31`` becomes ``2^30`` with ``e + 1``; an
  exponent below -31 flushes to ``M = 0, e = 0``. The real multiplier is ``M * 2^(e - 31)``.
* ``SaturatingRoundingDoublingHighMul(a, b)`` (gemmlowp): ``(a*b + nudge) / 2^31`` in int64 with
  C++ division (truncation toward zero), ``nudge = 2^30`` when ``a*b >= 0`` else ``1 - 2^30``;
  ``a == b == INT32_MIN`` saturates to ``INT32_MAX``. Equivalently ``floor((a*b + 2^30) / 2^31)``:
  ties round up (toward +inf), not away from zero.
* ``RoundingDivideByPOT(x, e)`` (gemmlowp): ``(x >> e) + (remainder > threshold)`` with
  ``remainder = x & (2^e - 1)``, ``threshold = (2^e - 1) >> 1`` plus one when ``x < 0``: round to
  nearest, ties away from zero.
* ``MultiplyByQuantizedMultiplier(int32 x, M, shift)``: ``RoundingDivideByPOT(SRDHM(x * 2^l, M), r)``
  with ``l = max(shift, 0)``, ``r = max(-shift, 0)``; ``x * 2^l`` is an int32 product (it wraps).
* ``TfLiteRound`` is ``std::round``: half away from zero, on float or double as the argument is.

The scalar helpers take and return Python ints / floats; float32 quantities (TFLite stores scales
as float32) are ``numpy.float32`` so that float32 arithmetic rounds as C++'s ``float`` does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from typing import Union

import numpy as np
import torch

__all__ = [
    "INT32_MIN",
    "INT32_MAX",
    "quantize_multiplier",
    "quantize_multiplier_smaller_than_one_exp",
    "quantize_multiplier_greater_than_one",
    "round_half_away",
    "round_half_away_f32",
    "f32",
    "mbqm_scalar",
    "srdhm_scalar",
    "rdbp_scalar",
    "wrap_int32",
    "srdhm",
    "rdbp",
    "mbqm",
    "mbqm_int64",
    "round_half_away_tensor",
    "quantize_float_f32",
    "libm_f32",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

IntOrTensor = Union[int, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# scalars
# ----------------------------------------------------------------------------------------------
def f32(x) -> np.float32:
    """``x`` as a C++ ``float``."""
    return np.float32(x)


def round_half_away(x: float) -> int:
    """``std::round`` of a double: nearest integer, ties away from zero (exact for any double)."""
    t = math.trunc(x)
    frac = x - t  # exact: subtracting the integer part of a double
    if abs(frac) >= 0.5:
        t += 1 if x > 0 else -1
    return int(t)


def round_half_away_f32(x: np.float32) -> np.float32:
    """``std::round`` (``roundf``) of a float, as a float."""
    x = np.float32(x)
    t = np.trunc(x)
    frac = np.float32(x - t)  # exact in float32
    if abs(frac) >= np.float32(0.5):
        t = np.float32(t + (1 if x > 0 else -1))
    return np.float32(t)


def quantize_multiplier(d: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: (multiplier M in [2^30, 2^31), shift e) with
    ``d ~= M * 2^(e - 31)``; ``(0, 0)`` for 0 and for ``d < ~2^-32`` (flushed to zero)."""
    d = float(d)
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)
    q_fixed = round_half_away(q * 2.0**31)  # q * 2^31 is exact
    if q_fixed == 2**31:
        q_fixed //= 2
        shift += 1
    if q_fixed > INT32_MAX:
        raise ValueError(f"QuantizeMultiplier({d}): multiplier out of range")
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one_exp(d: float) -> tuple[int, int]:
    """``QuantizeMultiplierSmallerThanOneExp``: as ``quantize_multiplier``, for ``0 < d < 1``
    (TFLite CHECK-fails otherwise, so the model would not load)."""
    if not 0.0 < d < 1.0:
        raise ValueError(f"TFLite needs a multiplier in (0, 1) here, got {d!r}")
    return quantize_multiplier(d)


def quantize_multiplier_greater_than_one(d: float) -> tuple[int, int]:
    if not d > 1.0:
        raise ValueError(f"TFLite needs a multiplier > 1 here, got {d!r}")
    return quantize_multiplier(d)


def _wrap32(v: int) -> int:
    return ((v + 2**31) % 2**32) - 2**31


def srdhm_scalar(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    n = ab + nudge
    q = abs(n) // (1 << 31)  # C++ division truncates toward zero
    return q if n >= 0 else -q


def rdbp_scalar(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm_scalar(x: int, multiplier: int, shift: int) -> int:
    """``MultiplyByQuantizedMultiplier(int32 x, M, shift)``, double rounding."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rdbp_scalar(srdhm_scalar(_wrap32(x * (1 << left)), multiplier), right)


def quantize_float_f32(value: float, scale: np.float32, zero_point: int) -> int:
    """The ``Quantize`` of ``CalculateActivationRangeQuantized``: ``zp + (int)round(f / scale)`` with
    ``f`` and ``scale`` floats (a float division, then ``roundf``)."""
    q = round_half_away_f32(np.float32(np.float32(value) / np.float32(scale)))
    return int(zero_point) + int(q)


# ----------------------------------------------------------------------------------------------
# int64 tensors holding int32 values
# ----------------------------------------------------------------------------------------------
def wrap_int32(x: torch.Tensor) -> torch.Tensor:
    """int64 values reduced to int32 two's complement (what an int32 overflow does in practice)."""
    return ((x + 2**31) & (2**32 - 1)) - 2**31


def srdhm(a: torch.Tensor, b: IntOrTensor) -> torch.Tensor:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int64 tensors holding int32 values."""
    b = torch.as_tensor(b, dtype=torch.int64, device=a.device)
    ab = a * b
    # (ab + nudge) / 2^31 truncated == floor((ab + 2^30) / 2^31) for either sign of ab
    out = torch.bitwise_right_shift(ab + (1 << 30), 31)
    if b.dim() == 0 and int(b) != INT32_MIN:  # the usual case: a constant multiplier, no saturation
        return out
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return torch.where(overflow, torch.full_like(out, INT32_MAX), out)


def rdbp(x: torch.Tensor, exponent: IntOrTensor) -> torch.Tensor:
    """gemmlowp ``RoundingDivideByPOT`` (0 <= exponent <= 31), ties away from zero."""
    e = torch.as_tensor(exponent, dtype=torch.int64, device=x.device)
    mask = torch.bitwise_left_shift(torch.ones_like(e), e) - 1
    remainder = x & mask
    threshold = torch.bitwise_right_shift(mask, 1) + (x < 0).to(torch.int64)
    return torch.bitwise_right_shift(x, e) + (remainder > threshold).to(torch.int64)


def mbqm(x: torch.Tensor, multiplier: IntOrTensor, shift: IntOrTensor) -> torch.Tensor:
    """``MultiplyByQuantizedMultiplier(int32, M, shift)`` (double rounding) on int64 tensors."""
    s = torch.as_tensor(shift, dtype=torch.int64, device=x.device)
    left = torch.clamp(s, min=0)
    right = torch.clamp(-s, min=0)
    shifted = wrap_int32(x * torch.bitwise_left_shift(torch.ones_like(left), left))
    return rdbp(srdhm(shifted, multiplier), right)


def mbqm_int64(x: torch.Tensor, multiplier: int, shift: int) -> torch.Tensor:
    """``MultiplyByQuantizedMultiplier(int64 x, M, shift)``: one rounding with the multiplier
    reduced to 16 bits (``(M + 2^15) >> 16``, saturated at 0x7FFF), ``shift`` in [-31, 7]."""
    reduced = (multiplier + (1 << 15)) >> 16 if multiplier < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    v = x * reduced + (1 << (total - 1))
    return wrap_int32(torch.bitwise_right_shift(v, total))


def round_half_away_tensor(x: torch.Tensor) -> torch.Tensor:
    """``std::round`` elementwise on a floating tensor (exact: no ``x + 0.5`` rounding)."""
    t = torch.trunc(x)
    frac = x - t
    return t + torch.sign(x) * (frac.abs() >= 0.5).to(x.dtype)


# ----------------------------------------------------------------------------------------------
# the C library's float functions, as LiteRT calls them (std::exp(float) is expf, ...)
# ----------------------------------------------------------------------------------------------
_LIBM = None


def _libm():
    global _LIBM
    if _LIBM is None:
        path = ctypes.util.find_library("m")
        lib = ctypes.CDLL(path) if path else None
        _LIBM = lib if lib is not None else False
    return _LIBM or None


def libm_f32(name: str, x) -> np.float32:
    """The C library's float function ``name`` (``expf``, ``tanhf``, ``logf``, ``sqrtf``,
    ``erff``, ``erfcf``, ``expm1f``) of a float, as LiteRT gets it from ``<cmath>``. Without a loadable C
    library (not Linux / macOS), the float64 function rounded to float32 (usually the same value;
    a LUT entry can then differ at a rounding tie)."""
    lib = _libm()
    x = np.float32(x)
    if lib is not None:
        fn = getattr(lib, name)
        fn.restype = ctypes.c_float
        fn.argtypes = [ctypes.c_float]
        return np.float32(fn(ctypes.c_float(float(x))))
    fallback = {"expf": math.exp, "tanhf": math.tanh, "logf": math.log, "sqrtf": math.sqrt,
                "erff": math.erf, "erfcf": math.erfc, "expm1f": math.expm1}[name]
    return np.float32(fallback(float(x)))
