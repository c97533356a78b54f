"""Batched, exact ``MultiplyByQuantizedMultiplier`` of int32 accumulators to int8, per channel.

TFLite's int8 convolutions end every output with (``ConvPerChannel``, ``DepthwiseConvPerChannel``)::

    a   = sum(w * (x - zp_in)) + bias                        # int32
    out = clamp(MultiplyByQuantizedMultiplier(a, M_c, shift_c) + zp_out, act_min, act_max)

``MultiplyByQuantizedMultiplier`` (double rounding, see ``fixedpoint``) is, for
``shift = l - r`` (``l, r >= 0``, one of them 0) and ``K = M * 2^l``::

    t = floor((a * K + 2^30) / 2^31)                  # SaturatingRoundingDoublingHighMul
    y = round_half_away_from_zero(t / 2^r)            # RoundingDivideByPOT

and the two floors fold into one (``floor(floor(x / p) / q) = floor(x / (p q))`` for integers):
``y = floor((a*K + 2^30 + 2^(30+r) - [p < 0] * 2^31) / 2^(31+r))`` with ``p = a*K + 2^30``, the
``[p < 0]`` term being RoundingDivideByPOT's ties-away-from-zero for negative ``t`` (for ``r = 0``
there is no second rounding: drop the ``2^(30+r)`` and ``[p < 0]`` terms). ``p < 0`` is
``a <= (-2^30 - 1) // K``, a per-channel threshold ``theta`` on the accumulator.

``out`` is a non-decreasing function of ``a`` that saturates at ``act_min`` and ``act_max``:
only accumulators in the per-channel window ``[A_lo, A_hi]`` (computed once, exactly, by
bisection with the integer formula) give unsaturated outputs. The window is about
``(act_max - act_min) / multiplier`` wide, so inside it ``|a * K|`` is far below 2^52 and float64
evaluates the formula exactly:

    u = a * K/2^(31+r) + c - k * [a < theta]         (c, k per channel, zero point folded in)
    out = floor(clamp(u, act_min + 128, act_max + 128)) - 128

Every product and sum there is an integer multiple of ``2^-(31+r)`` below 2^53 in magnitude, so
float64 arithmetic is exact in the window; outside it the exact ``u`` is at least one step
beyond the clamp bounds and float64's relative error (2^-52) cannot bring it back, so the clamp
gives the saturated value. ``theta`` is 0 when ``M > 2^30`` (``a < 0``), so the indicator is
``-clamp(a, -1, 0)``. The zero point and an offset of 128 are folded into ``c`` so that the
clamped ``u`` lies in [0, 256): the float -> uint8 conversion (truncation) is then the floor,
and flipping bit 7 gives the int8 value. The arithmetic runs on preallocated chunk buffers with
in-place ops (no per-op allocation). Where the window does not make the product exact (a
multiplier below about 2^-14 together with accumulators above 2^22) or a shift is positive with
accumulators that could wrap int32, the gemmlowp formulas run on int64 tensors instead
(``fixedpoint.mbqm``), wrapping where C++ wraps.

Large tensors are processed in row chunks so the temporaries stay in cache (the work is memory
bound); the result does not depend on the chunking.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from neutronq.runtime.emulate.fixedpoint import mbqm, wrap_int32

__all__ = ["Requantizer", "CHUNK_ELEMENTS", "output_window"]

CHUNK_ELEMENTS = 1 << 15
_EXACT_F64 = 2**53
# tests set "f64" / "i64" to check both evaluations against LiteRT ("f64" only where exact)
FORCE_PATH: Optional[str] = None


def _outputs_np(a: np.ndarray, mult: np.ndarray, shift: np.ndarray, zero_point: int) -> np.ndarray:
    """``MultiplyByQuantizedMultiplier(a, M, shift) + zp`` on int64 numpy arrays (build time)."""
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = ((a * (np.int64(1) << left) + 2**31) & (2**32 - 1)) - 2**31  # int32 product, wrapped
    t = (x * mult + (1 << 30)) >> 31  # SaturatingRoundingDoublingHighMul (M >= 0: no saturation)
    mask = (np.int64(1) << right) - 1
    y = (t >> right) + ((t & mask) > ((mask >> 1) + (t < 0))).astype(np.int64)
    return y + zero_point


def output_window(mult: Sequence[int], shifts: Sequence[int], bound: Sequence[int], zero_point: int,
                  lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel ``[A_lo, A_hi]`` within ``[-bound, bound]``: ``A_lo`` the least accumulator whose
    unclamped output is ``>= lo`` (``-bound`` if all are; ``bound`` if none is), ``A_hi`` the
    greatest whose unclamped output is ``<= hi`` (likewise); exact, by bisection with the integer
    formula (which is non-decreasing in the accumulator)."""
    m = np.asarray(list(mult), np.int64)
    s = np.asarray(list(shifts), np.int64)
    b = np.minimum(np.asarray(list(bound), np.int64), 2**31)

    def first_at_least(target: int) -> np.ndarray:  # least a in [-b, b + 1] with out(a) >= target
        left, right = -b.copy(), b + 1  # out(b + 1) counts as +inf
        while np.any(left < right):
            mid = (left + right) // 2
            ok = _outputs_np(mid, m, s, zero_point) >= target
            right = np.where(ok, mid, right)
            left = np.where(ok, left, mid + 1)
        return left

    a_lo = np.minimum(first_at_least(lo), b)
    a_hi = np.maximum(first_at_least(hi + 1) - 1, -b)
    return a_lo, a_hi


def _fused_f64(a: torch.Tensor, bias: torch.Tensor, m: torch.Tensor, c_pos: torch.Tensor, kappa: torch.Tensor,
               theta: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """The float64 evaluation in one expression (for ``torch.compile`` to fuse into one pass): the
    same exact arithmetic as ``Requantizer._f64``; returns the uint8 ``u`` with bit 7 flipped."""
    x = a.to(torch.float64) + bias
    u = x * m + c_pos + kappa * torch.clamp(x - theta, -1.0, 0.0)
    u = torch.minimum(torch.maximum(u, bounds[0]), bounds[1])
    return torch.bitwise_xor(u.to(torch.uint8), 128)


_COMPILED = None


def _compiled_f64():
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = torch.compile(_fused_f64, dynamic=True)
    return _COMPILED


class Requantizer(torch.nn.Module):
    """int32 accumulators with the bias already added (given as exact integers in a float or int
    tensor, channels on the last dim) -> int8, TFLite's per-channel requantization.

    ``multipliers``, ``shifts``: per channel, from ``QuantizeMultiplier``; ``bound``: per-channel
    bound of ``|a|`` (exactness bookkeeping); ``zero_point``, ``act_min``, ``act_max``: output.
    """

    def __init__(self, multipliers: Sequence[int], shifts: Sequence[int], bound: np.ndarray,
                 zero_point: int, act_min: int, act_max: int, force: Optional[str] = None):
        super().__init__()
        mult = [int(m) for m in multipliers]
        shifts = [int(s) for s in shifts]
        channels = len(mult)
        bound = [int(v) for v in np.broadcast_to(np.asarray(bound, np.int64), (channels,))]
        self.zero_point, self.act_min, self.act_max = int(zero_point), int(act_min), int(act_max)
        left = [max(s, 0) for s in shifts]
        right = [max(-s, 0) for s in shifts]
        k = [mm << ll for mm, ll in zip(mult, left)]
        a_lo, a_hi = output_window(mult, shifts, bound, zero_point, act_min, act_max)
        # exact evaluation is needed on the window and one unit beyond each edge (outputs there
        # are past the clamp bounds by less than one step)
        reach = [max(abs(int(x) - 1), abs(int(y) + 1)) for x, y in zip(a_lo, a_hi)]
        # exact in float64, and monotone: no int32 wrap of a * 2^l anywhere in [-bound, bound]
        exact = [a * kk + 2**31 + 2 ** (30 + r) + 384 * 2 ** (31 + r) < _EXACT_F64
                 and (ll == 0 or bd * (1 << ll) < 2**31)
                 for a, kk, r, ll, bd in zip(reach, k, right, left, bound)]
        force = force or FORCE_PATH
        if force == "i64":
            exact = [False] * channels
        self.channels = channels
        self.compiled = False  # TFLiteModule(compile=True) sets it: _fused_f64 through torch.compile
        self.wrap = any(v >= 2**31 for v in bound)
        # channels the float64 formula cannot take exactly (a multiplier below ~2^-13 with large
        # accumulators, typically a dead channel of per-channel weights) run the int64 formulas
        slow = [c for c in range(channels) if not exact[c]]
        self.path = "i64" if len(slow) == channels else "f64"
        self.folded = bool(slow) and all(shifts[c] < 0 for c in slow)  # every r >= 1: one folded shift
        if self.folded:
            self.register_buffer("fold_head", torch.tensor([2 ** (30 - shifts[c]) for c in slow], dtype=torch.int64),
                                 persistent=False)
            self.register_buffer("fold_shift", torch.tensor([31 - shifts[c] for c in slow], dtype=torch.int64),
                                 persistent=False)
        if slow:
            self.register_buffer("slow", torch.tensor(slow, dtype=torch.int64), persistent=False)
            self.register_buffer("mult", torch.tensor([mult[c] for c in slow], dtype=torch.int64), persistent=False)
            self.register_buffer("shift", torch.tensor([shifts[c] for c in slow], dtype=torch.int64),
                                 persistent=False)
        else:
            self.slow = None
        if self.path == "f64":
            self.any_negative_rule = any(r > 0 for r, ok in zip(right, exact) if ok)
            m64, c_pos, c_neg, theta = [], [], [], []
            for c, (kk, r) in enumerate(zip(k, right)):
                if not exact[c]:  # placeholder: a constant output, overwritten by the int64 path
                    m64.append(0.0)
                    c_pos.append(float(self.zero_point + 128))
                    c_neg.append(float(self.zero_point + 128))
                    theta.append(0.0)
                    continue
                s = 31 + r
                head = 2**30 + (2 ** (30 + r) if r > 0 else 0)
                m64.append(kk / 2.0**s)
                cc = head / 2.0**s + self.zero_point + 128
                c_pos.append(cc)
                c_neg.append(cc - (2.0**31 / 2.0**s if r > 0 else 0.0))
                theta.append(float((-(2**30) - 1) // kk + 1) if kk else -(2.0**40))
            self.register_buffer("m", torch.tensor(m64, dtype=torch.float64), persistent=False)
            self.register_buffer("c_pos", torch.tensor(c_pos, dtype=torch.float64), persistent=False)
            self.register_buffer("kappa", torch.tensor([p - n for p, n in zip(c_pos, c_neg)], dtype=torch.float64),
                                 persistent=False)
            self.register_buffer("theta64", torch.tensor(theta, dtype=torch.float64), persistent=False)
            self.register_buffer("bounds", torch.tensor([self.act_min + 128.0, self.act_max + 128.0],
                                                        dtype=torch.float64), persistent=False)
            self.theta_zero = all(t == 0.0 for t, kp in zip(theta, self.kappa.tolist()) if kp != 0.0)

    def extra_repr(self) -> str:
        slow = 0 if self.slow is None else len(self.slow)
        return f"path={self.path}, channels={self.channels}, int64 channels={slow}"

    def _f64(self, a: torch.Tensor, out: torch.Tensor, buffers: list, bias) -> None:
        """``out`` (uint8 view of the int8 result, before the bit-7 flip) from ``a``."""
        x, s, u = (b[: a.shape[0]] for b in buffers)
        if bias is not None:
            torch.add(a, bias, out=x)
        else:
            x.copy_(a)
        torch.addcmul(self.c_pos, x, self.m, out=u)
        if self.any_negative_rule:
            if self.theta_zero:
                torch.clamp(x, -1.0, 0.0, out=s)  # -[a < 0] for integer a
            else:
                torch.sub(x, self.theta64, out=s).clamp_(-1.0, 0.0)  # -[a < theta]
            u.addcmul_(s, self.kappa)
        u.clamp_(self.act_min + 128, self.act_max + 128)
        out.copy_(u)

    def _i64(self, a: torch.Tensor, bias=None) -> torch.Tensor:
        a = a.to(torch.int64)
        if bias is not None:
            a = a + bias.to(torch.int64)
        if self.folded and not self.wrap:
            # no left shift: y = (a*M + 2^30 + 2^(30+r) - [p < 0] 2^31) >> (31 + r), p = a*M + 2^30
            p = a * self.mult + (1 << 30)
            p.add_(torch.bitwise_right_shift(p, 63) * (1 << 31))  # -2^31 where p < 0 (r > 0)
            y = torch.bitwise_right_shift(p.add_(self.fold_head), self.fold_shift) + self.zero_point
            return y.clamp_(self.act_min, self.act_max).to(torch.int8)
        y = mbqm(wrap_int32(a) if self.wrap else a, self.mult, self.shift) + self.zero_point
        return y.clamp_(self.act_min, self.act_max).to(torch.int8)

    def forward(self, a: torch.Tensor, bias: Optional[torch.Tensor] = None,
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``a``: exact integer accumulators (float or int tensor, channels last); ``bias``: an
        optional per-channel float64 bias (exact integers) to add first; ``out``: an optional
        int8 tensor of ``a``'s shape to write to (a block of a larger output)."""
        if self.path == "i64":
            y = self._chunked_i64(a, bias)
            return y if out is None else out.copy_(y)
        rows = a.reshape(-1, a.shape[-1])
        slow_bias = None if bias is None or self.slow is None else bias.index_select(0, self.slow)
        if self.compiled:
            b = bias if bias is not None else torch.zeros_like(self.m)
            y = _compiled_f64()(rows, b, self.m, self.c_pos, self.kappa, self.theta64, self.bounds)
            y = y.view(torch.int8)
            if self.slow is not None:
                y = y.index_copy(-1, self.slow, self._i64(rows.index_select(-1, self.slow), slow_bias))
            return y.reshape(a.shape) if out is None else out.copy_(y.reshape(a.shape))
        target = torch.empty(rows.shape, dtype=torch.int8, device=a.device) if out is None else out.view(rows.shape)
        step = max(1, CHUNK_ELEMENTS // rows.shape[1])
        buffers = self._scratch_buffers(step, rows.shape[1], a.device)
        tu = target.view(torch.uint8)
        for i in range(0, rows.shape[0], step):
            self._f64(rows[i:i + step], tu[i:i + step], buffers, bias)
            tu[i:i + step].bitwise_xor_(128)  # u - 128: flip bit 7
        if self.slow is not None:
            target.index_copy_(-1, self.slow, self._i64(rows.index_select(-1, self.slow), slow_bias))
        return target.view(a.shape)

    def _scratch_buffers(self, rows: int, cols: int, device) -> list:
        """Three float64 chunk buffers, kept between calls (a fresh multi-hundred-kilobyte CPU
        allocation is page-faulted in on every call otherwise)."""
        key = (rows, cols, str(device))
        cached = getattr(self, "_chunk_buffers", None)
        if cached is None or cached[0] != key:
            cached = (key, [torch.empty((rows, cols), dtype=torch.float64, device=device) for _ in range(3)])
            self._chunk_buffers = cached
        return cached[1]

    def _chunked_i64(self, a: torch.Tensor, bias) -> torch.Tensor:
        if a.numel() <= CHUNK_ELEMENTS or a.dim() == 0:
            return self._i64(a, bias)
        rows = a.reshape(-1, a.shape[-1])
        out = torch.empty(rows.shape, dtype=torch.int8, device=a.device)
        step = max(1, CHUNK_ELEMENTS // rows.shape[1])
        for i in range(0, rows.shape[0], step):
            out[i:i + step] = self._i64(rows[i:i + step], bias)
        return out.reshape(a.shape)
