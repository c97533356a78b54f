"""Batched, exact ``MultiplyByQuantizedMultiplier`` of int32 accumulators to int8, per channel.

TFLite's int8 convolutions end every output with (``ConvPerChannel``, ``DepthwiseConvPerChannel``)::

    acc = sum(w * (x - zp_in)) + bias                        # int32
    out = clamp(MultiplyByQuantizedMultiplier(acc, M_c, shift_c) + zp_out, act_min, act_max)

``MultiplyByQuantizedMultiplier`` (double rounding, see ``fixedpoint``) is, for
``shift = l - r`` (``l, r >= 0``, one of them 0) and ``K = M * 2^l``::

    t = floor((acc * K + 2^30) / 2^31)                # SaturatingRoundingDoublingHighMul
    y = round_half_away_from_zero(t / 2^r)            # RoundingDivideByPOT

and the two floors fold into one (``floor(floor(x / a) / b) = floor(x / (a b))`` for integers):
``y = floor((acc * K + 2^30 + 2^(30+r) - [p < 0] * 2^31) / 2^(31+r))`` with ``p = acc*K + 2^30``,
the ``[p < 0]`` term being RoundingDivideByPOT's ties-away-from-zero for negative ``t`` (for
``r = 0`` there is no second rounding: drop the ``2^(30+r)`` and ``[p < 0]`` terms). ``p < 0`` is
``acc <= (-2^30 - 1) // K``, a per-channel threshold on the accumulator.

Two exact ways to evaluate it, chosen per layer at build time from bounds on ``|acc|`` (the
weights bound them):

* float64 (the fast path): every quantity above is an integer times ``2^-(31+r)``; while
  ``|acc| * K + 2^31 + 2^(30+r) < 2^52`` each float64 product and sum is exact, so
  ``floor(acc * K/2^S + c - k * [acc < theta])`` is the exact result. Output zero point and the
  bias fold into the per-channel constant ``c``.
* int64, when the bound does not hold (or the int32 product ``acc * 2^l`` can wrap): the
  gemmlowp formulas themselves on int64 tensors (``fixedpoint.mbqm``), wrapping where C++ wraps.

Large tensors are processed in row chunks so the temporaries stay in cache (the work is memory
bound); the result does not depend on the chunking.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from neutronq.runtime.emulate.fixedpoint import mbqm, wrap_int32

__all__ = ["Requantizer", "CHUNK_ELEMENTS"]

CHUNK_ELEMENTS = 1 << 16
# tests set "f64" / "i64" to check both evaluations against LiteRT ("f64" only where exact)
FORCE_PATH: Optional[str] = None
_EXACT_F64 = 2**52


class Requantizer(torch.nn.Module):
    """int32 accumulators (given as exact integers in a float or int tensor, channels on the
    last dim, bias not yet added) -> int8, TFLite's per-channel requantization.

    ``multipliers``, ``shifts``: per channel, from ``QuantizeMultiplier``; ``bias``: per-channel
    int64 added to the accumulator first; ``acc_bound``: per-channel bound of ``|acc|`` before the
    bias (exactness bookkeeping only); ``zero_point``, ``act_min``, ``act_max``: output.
    """

    def __init__(self, multipliers: Sequence[int], shifts: Sequence[int], bias: np.ndarray,
                 acc_bound: np.ndarray, zero_point: int, act_min: int, act_max: int,
                 force: Optional[str] = None):
        super().__init__()
        mult = [int(m) for m in multipliers]
        shifts = [int(s) for s in shifts]
        channels = len(mult)
        bias = [int(b) for b in np.broadcast_to(np.asarray(bias, np.int64), (channels,))]
        bound = [int(b) for b in np.broadcast_to(np.asarray(acc_bound, np.int64), (channels,))]
        self.zero_point, self.act_min, self.act_max = int(zero_point), int(act_min), int(act_max)
        left = [max(s, 0) for s in shifts]
        right = [max(-s, 0) for s in shifts]
        k = [m << l for m, l in zip(mult, left)]
        a_max = [b + abs(c) for b, c in zip(bound, bias)]
        f64_ok = all(a * kk + 2**31 + 2 ** (30 + r) < _EXACT_F64 and (l == 0 or a * (1 << l) < 2**31)
                     for a, kk, r, l in zip(a_max, k, right, left))
        force = force or FORCE_PATH
        self.path = "i64" if force == "i64" or not f64_ok else "f64"
        self.any_negative_rule = any(r > 0 for r in right)
        self.wrap = any(a >= 2**31 for a in a_max)
        if self.path == "f64":
            m64, c_pos, c_neg, theta = [], [], [], []
            for kk, r, b in zip(k, right, bias):
                s = 31 + r
                head = 2**30 + (2 ** (30 + r) if r > 0 else 0)
                m64.append(kk / 2.0**s)
                c = (b * kk + head) / 2.0**s + self.zero_point
                c_pos.append(c)
                c_neg.append(c - (2.0**31 / 2.0**s if r > 0 else 0.0))
                if kk == 0:
                    theta.append(-(2.0**30))
                else:
                    a_neg = (-(2**30) - 1) // kk  # p < 0  <=>  acc + bias <= a_neg
                    theta.append(float(min(max(a_neg - b + 1, -(2**30)), 2**30)))
            self.register_buffer("m", torch.tensor(m64, dtype=torch.float64), persistent=False)
            self.register_buffer("c_pos", torch.tensor(c_pos, dtype=torch.float64), persistent=False)
            self.register_buffer("c_neg", torch.tensor(c_neg, dtype=torch.float64), persistent=False)
            self.register_buffer("theta32", torch.tensor(theta, dtype=torch.float32), persistent=False)
            self.register_buffer("theta64", torch.tensor(theta, dtype=torch.float64), persistent=False)
        else:
            self.register_buffer("mult", torch.tensor(mult, dtype=torch.int64), persistent=False)
            self.register_buffer("shift", torch.tensor(shifts, dtype=torch.int64), persistent=False)
            self.register_buffer("bias", torch.tensor(bias, dtype=torch.int64), persistent=False)

    def extra_repr(self) -> str:
        return f"path={self.path}, channels={len(self.m if self.path == 'f64' else self.mult)}"

    def _f64(self, acc: torch.Tensor) -> torch.Tensor:
        if self.any_negative_rule:
            theta = self.theta64 if acc.dtype == torch.float64 else self.theta32
            c = torch.where(acc < theta, self.c_neg, self.c_pos)
            u = torch.addcmul(c, acc, self.m)
        else:
            u = torch.addcmul(self.c_pos, acc, self.m)
        return u.floor_().clamp_(self.act_min, self.act_max).to(torch.int8)

    def _i64(self, acc: torch.Tensor) -> torch.Tensor:
        a = acc.to(torch.int64) + self.bias
        if self.wrap:
            a = wrap_int32(a)
        y = mbqm(a, self.mult, self.shift) + self.zero_point
        return y.clamp_(self.act_min, self.act_max).to(torch.int8)

    def forward(self, acc: torch.Tensor) -> torch.Tensor:
        fn = self._f64 if self.path == "f64" else self._i64
        if acc.numel() <= CHUNK_ELEMENTS or acc.dim() == 0:
            return fn(acc)
        rows = acc.reshape(-1, acc.shape[-1])
        out = torch.empty(rows.shape, dtype=torch.int8, device=acc.device)
        step = max(1, CHUNK_ELEMENTS // rows.shape[1])
        for i in range(0, rows.shape[0], step):
            out[i:i + step] = fn(rows[i:i + step])
        return out.reshape(acc.shape)
