"""Audit a payload's int8 arithmetic: each op's output in LiteRT's reference kernels against the
exactly rounded result of the same op, computed in float64 from the op's own int8 inputs.

Why: TFLite's int8 kernels requantize an int32 accumulator in two roundings: a 31-bit fixed-point
"high multiply" rounds to a multiple of 2^-r output steps, where r is the right shift of the
multiplier (real multiplier = M0 * 2^-r, M0 in [0.5, 1)), then a rounding shift by r rounds to
a step. A value within 2^-(r+1) of a rounding tie can therefore land one step away from where
exact rounding (what ``convert_pt2e``'s float model computes) puts it. A delegated op whose
differences from exact rounding are all one step, all inside that band, computes what it
should; anything else (a wrong bias, padding, layout or multiplier) shows up as a difference
outside the band or larger than one step.

Audited ops: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MEAN (the arithmetic of
convolutional networks), BATCH_MATMUL and SUB (attention); other ops are not audited and not
listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from neutronq.lowering.payload import NeutronPayload, PayloadError, decode_payload, to_channels_last
from neutronq.lowering.tflite_builder import tfl

__all__ = ["OpAudit", "audit_payload", "audit_tensors", "requantization_band"]

# fixed-point slack: a 31-bit multiplier is exact to 2^-31 relative; float64 sums are exact here
_SLACK = 1e-6
_OP_NAMES = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}


def requantization_band(multiplier: float) -> float:
    """Half-width (in output steps) of the band around a rounding tie inside which TFLite's
    two-rounding requantization by ``multiplier`` may differ from exact rounding."""
    if multiplier <= 0:
        return 0.0
    _, exponent = math.frexp(multiplier)  # multiplier = m * 2^exponent, m in [0.5, 1)
    return _band_of_shift(-exponent)


def _band_of_shift(right_shift: int) -> float:
    """A rounding shift by ``right_shift`` after a rounded high multiply: half a unit of
    2^-right_shift steps; no band without a shift (a single rounding)."""
    return 2.0 ** -(right_shift + 1) if right_shift > 0 else 0.0


@dataclass(frozen=True)
class OpAudit:
    """One op's output against exact rounding, accumulated over the audited inputs."""

    index: int  # operator index in the subgraph
    op: str  # TFLite builtin name
    name: str  # output tensor name (the graph node it lowers)
    elements: int
    mismatched: int  # elements that differ from exact rounding
    max_steps: int  # largest difference, in steps
    farthest_from_tie: float  # largest distance from a tie among mismatched elements (steps)
    band: float  # largest requantization band of the op (``requantization_band``)

    @property
    def mismatch_rate(self) -> float:
        return self.mismatched / self.elements if self.elements else 0.0

    @property
    def explained(self) -> bool:
        """Every difference is one step, at a value inside the two-rounding band around a tie."""
        return self.max_steps <= 1 and self.farthest_from_tie <= self.band + _SLACK

    def merge(self, other: "OpAudit") -> "OpAudit":
        return OpAudit(self.index, self.op, self.name, self.elements + other.elements,
                       self.mismatched + other.mismatched, max(self.max_steps, other.max_steps),
                       max(self.farthest_from_tie, other.farthest_from_tie), max(self.band, other.band))


# ----------------------------------------------------------------------------------------------
# exact results, in output steps before rounding (real-valued), from an op's int8 inputs
# ----------------------------------------------------------------------------------------------
class _Model:
    def __init__(self, tflite: bytes):
        self.m = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(tflite, 0))
        self.sg = self.m.subgraphs[0]

    def qp(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.sg.tensors[index].quantization
        return np.asarray(q.scale, np.float64), np.asarray(q.zeroPoint, np.int64)

    def op_name(self, op) -> str:
        code = self.m.operatorCodes[op.opcodeIndex]
        return _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _conv(model: _Model, op, t, depthwise: bool):
    import torch

    opt = op.builtinOptions
    x_i, w_i, b_i = op.inputs[:3]
    (sx, zx), (sw, _), (so, zo) = model.qp(x_i), model.qp(w_i), model.qp(op.outputs[0])
    x = torch.from_numpy(t(x_i)).permute(0, 3, 1, 2) - float(zx[0])  # NCHW, zero point removed
    w = torch.from_numpy(t(w_i))
    w = w.permute(3, 0, 1, 2) if depthwise else w.permute(0, 3, 1, 2)  # OIHW
    bias = torch.from_numpy(t(b_i)) if b_i >= 0 else None
    dil = (opt.dilationHFactor, opt.dilationWFactor)
    stride = (opt.strideH, opt.strideW)
    if opt.padding == tfl.Padding.SAME:
        (ph0, ph1), (pw0, pw1) = (_same_pads(x.shape[d], w.shape[d], stride[d - 2], dil[d - 2]) for d in (2, 3))
        x = torch.nn.functional.pad(x, (pw0, pw1, ph0, ph1))
    groups = x.shape[1] if depthwise else 1
    acc = torch.nn.functional.conv2d(x, w, bias, stride=stride, dilation=dil, groups=groups)
    mult = np.broadcast_to(sw * sx[0] / so[0], (w.shape[0],))
    return acc.permute(0, 2, 3, 1).numpy() * mult + zo[0], mult


def _fully_connected(model: _Model, op, t):
    x_i, w_i, b_i = op.inputs[:3]
    (sx, zx), (sw, _), (so, zo) = model.qp(x_i), model.qp(w_i), model.qp(op.outputs[0])
    w = t(w_i)
    acc = (t(x_i).reshape(-1, w.shape[1]) - zx[0]) @ w.T
    if b_i >= 0:
        acc = acc + t(b_i)
    mult = np.broadcast_to(sw * sx[0] / so[0], (w.shape[0],))
    return acc * mult + zo[0], mult


def _add(model: _Model, op, t):
    (s1, z1), (s2, z2), (so, zo) = model.qp(op.inputs[0]), model.qp(op.inputs[1]), model.qp(op.outputs[0])
    real = (s1[0] * (t(op.inputs[0]) - z1[0]) + s2[0] * (t(op.inputs[1]) - z2[0])) / so[0] + zo[0]
    # TFLite rescales both inputs to 2^-20 of twice the larger input scale (one rounding each),
    # then requantizes the sum: bound both input roundings into the band of the output one.
    twice_max = 2 * max(s1[0], s2[0])
    unit = twice_max / (2**20 * so[0])
    return real, np.array([unit]), 2 * unit + requantization_band(unit)


def _sub(model: _Model, op, t):
    (s1, z1), (s2, z2), (so, zo) = model.qp(op.inputs[0]), model.qp(op.inputs[1]), model.qp(op.outputs[0])
    real = (s1[0] * (t(op.inputs[0]) - z1[0]) - s2[0] * (t(op.inputs[1]) - z2[0])) / so[0] + zo[0]
    # the same arithmetic as ADD, with the second input negated
    unit = 2 * max(s1[0], s2[0]) / (2**20 * so[0])
    return real, np.array([unit]), 2 * unit + requantization_band(unit)


def _batch_matmul(model: _Model, op, t):
    (sa, za), (sb, zb), (so, zo) = model.qp(op.inputs[0]), model.qp(op.inputs[1]), model.qp(op.outputs[0])
    a, b = t(op.inputs[0]) - za[0], t(op.inputs[1]) - zb[0]
    if op.builtinOptions.adjX:
        a = np.swapaxes(a, -1, -2)
    if op.builtinOptions.adjY:
        b = np.swapaxes(b, -1, -2)
    mult = sa[0] * sb[0] / so[0]
    return (a @ b) * mult + zo[0], np.array([mult])


def _mean(model: _Model, op, t):
    (sx, zx), (so, zo) = model.qp(op.inputs[0]), model.qp(op.outputs[0])
    x = t(op.inputs[0])
    axes = tuple(int(a) % x.ndim for a in np.atleast_1d(t(op.inputs[1])))
    count = int(np.prod([x.shape[a] for a in axes]))
    real = sx[0] * (x.mean(axis=axes) - zx[0]) / so[0] + zo[0]
    # The reference kernel quantizes input/output scale to M0 * 2^e, then folds the element
    # count in as (M0 << floor(log2 count)) / count without renormalising, so its right shift
    # is floor(log2 count) - e (one more bit of band than the folded multiplier would have).
    _, exponent = math.frexp(float(sx[0] / so[0]))
    band = _band_of_shift(count.bit_length() - 1 - exponent)
    return real, np.array([sx[0] / (so[0] * count)]), band


def _activation_range(model: _Model, op, out_scale: float, out_zp: int) -> tuple[float, float]:
    act = getattr(op.builtinOptions, "fusedActivationFunction", tfl.ActivationFunctionType.NONE)
    lo, hi = -128.0, 127.0
    q = lambda v: out_zp + round(v / out_scale)  # noqa: E731
    if act in (tfl.ActivationFunctionType.RELU, tfl.ActivationFunctionType.RELU6):
        lo = max(lo, q(0.0))
    if act == tfl.ActivationFunctionType.RELU6:
        hi = min(hi, q(6.0))
    if act == tfl.ActivationFunctionType.RELU_N1_TO_1:
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    return lo, hi


def _audit_op(model: _Model, index: int, op, t) -> OpAudit | None:
    name = model.op_name(op)
    band = None
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        real, mult = _conv(model, op, t, depthwise=name == "DEPTHWISE_CONV_2D")
    elif name == "FULLY_CONNECTED":
        real, mult = _fully_connected(model, op, t)
    elif name == "ADD":
        real, mult, band = _add(model, op, t)
    elif name == "MEAN":
        real, mult, band = _mean(model, op, t)
    elif name == "SUB":
        real, mult, band = _sub(model, op, t)
    elif name == "BATCH_MATMUL":
        real, mult = _batch_matmul(model, op, t)
    else:
        return None
    out = op.outputs[0]
    got = t(out)
    real = real.reshape(got.shape)
    so, zo = model.qp(out)
    lo, hi = _activation_range(model, op, float(so[0]), int(zo[0]))
    # exact: round half away from zero, as TFLite does at true ties
    exact = np.clip(np.sign(real) * np.floor(np.abs(real) + 0.5), lo, hi)
    diff = np.abs(got - exact)
    wrong = diff > 0
    from_tie = np.abs(real - np.floor(real) - 0.5)
    if band is None:
        band = max(requantization_band(float(m)) for m in np.unique(mult))
    return OpAudit(index, name, model.sg.tensors[out].name.decode(), int(diff.size), int(wrong.sum()),
                   int(diff.max()) if diff.size else 0,
                   float(from_tie[wrong].max()) if wrong.any() else 0.0, float(band))


def audit_tensors(tflite: bytes, tensor: Callable[[int], np.ndarray]) -> list[OpAudit]:
    """Audit the audited ops of a TFLite model given the values of its tensors after one run.

    ``tensor(i)`` returns tensor ``i`` (TFLite layout): from a LiteRT interpreter that kept all
    tensors, as ``audit_payload`` does, or from any other run of the same model, such as a
    board's tensor dump. Returns one ``OpAudit`` per audited op, in graph order.
    """
    return _audit_run(_Model(tflite), tensor)


def _audit_run(model: _Model, tensor: Callable[[int], np.ndarray]) -> list[OpAudit]:
    cache: dict[int, np.ndarray] = {}

    def t(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = np.asarray(tensor(i)).astype(np.float64)
        return cache[i]

    audits = (_audit_op(model, index, op, t) for index, op in enumerate(model.sg.operators))
    return [a for a in audits if a is not None]


def audit_payload(payload, inputs: list) -> list[OpAudit]:
    """Run a TFLite payload in LiteRT's reference kernels on each input set of ``inputs`` (a list
    of lists of int8 arrays in PyTorch layout, as ``run_payload`` takes them) and audit every
    CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MEAN, SUB and BATCH_MATMUL against exact
    rounding.

    Returns one ``OpAudit`` per audited op, in graph order, accumulated over the input sets.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if not isinstance(payload, NeutronPayload):
        payload = decode_payload(payload)
    if payload.kind != "tflite":
        raise PayloadError(f"audit_payload audits TFLite payloads; this one is {payload.kind!r}.")
    interp = Interpreter(model_content=payload.tflite, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    model = _Model(payload.tflite)  # parsed once for all input sets
    details = interp.get_input_details()
    total: dict[int, OpAudit] = {}
    for input_set in inputs:
        if len(input_set) != len(details):
            raise ValueError(f"The payload takes {len(details)} inputs; got {len(input_set)}.")
        for d, x, cl in zip(details, input_set, payload.input_channels_last):
            x = np.asarray(x)
            interp.set_tensor(d["index"], to_channels_last(x) if cl else x)
        interp.invoke()
        for a in _audit_run(model, interp.get_tensor):
            total[a.index] = total[a.index].merge(a) if a.index in total else a
    return [total[i] for i in sorted(total)]
