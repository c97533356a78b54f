"""Activations: relu / relu6 / hardtanh(-1, 1) -> RELU / RELU6 / RELU_N1_TO_1 (when not fused
into the conv or linear before them), sigmoid -> LOGISTIC, tanh -> TANH, softmax -> SOFTMAX,
hardswish -> HARD_SWISH, gelu -> GELU, leaky_relu -> LEAKY_RELU, prelu -> PRELU;
clamp / hardtanh with other scalar bounds -> RELU_0_TO_1, or MAXIMUM / MINIMUM with constants;
and the composites: hardsigmoid -> ADD (fused RELU6) + MUL, silu -> LOGISTIC + MUL,
elu -> MINIMUM, EXP, SUB, QUANTIZE, MAXIMUM.

LOGISTIC and SOFTMAX outputs are 1/256, zero point -128; TANH 1/128, zero point 0 (the
quantizer fixes them). SOFTMAX runs over the last stored axis: the softmax dim is stored there
(the channel dim of an image, the last dim of attention scores; see ``softmax_limits``).

Sources of the limits below (read, not run): NXP's reference converters in ExecuTorch 1.5.1,
``backends/nxp/backend/ir/converter/node_converters/ops_converters/<op>_converter.py`` ([NXP-conv/X]
below), and NXP's ``docs/source/backends/nxp/op-support.csv``. Measured in LiteRT 2.3.0's
reference kernels (BUILTIN_REF) against convert_pt2e (the per-op cases): GELU, PRELU, the clamp
forms, at most 1 int8 step (0 mostly; 1 at rounding ties, TFLite rounding them away from zero);
LEAKY_RELU, hardsigmoid, silu, elu at most 1 step.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from neutronq.backend.scheme import (
    CLAMP_KERNEL_RANGES,
    SIGMOID_SCALE,
    SIGMOID_ZERO_POINT,
    SOFTMAX_SCALE,
    SOFTMAX_ZERO_POINT,
    TANH_SCALE,
    TANH_ZERO_POINT,
)
from neutronq.fx import arg, clamp_range, node_op
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.edge import activation_kind, is_weight_path, output_qparams
from neutronq.lowering.limits import equal_io, shape
from neutronq.lowering.tflite_builder import QParams, tfl
from neutronq.lowering.ops.base import NO_PUBLISHED_LIMIT, NoPublishedLimit, OpLowering


def _unary(code=None, options=None):
    def convert(ctx: ConversionContext, node) -> None:
        x = ctx.act(node.args[0])
        out = ctx.output(node)
        ctx.b.op(code or activation_kind(node), [x.index], [out.index], options() if options else None)
        ctx.values[node] = out

    return convert


def convert_softmax(ctx: ConversionContext, node) -> None:
    # SOFTMAX runs over the stored last axis: the softmax dim is put there (stored so already:
    # channels of an image, the last dim of attention scores; else one TRANSPOSE), and the
    # output keeps that layout
    x = ctx.stored(node.args[0])
    dim = int(node.args[1]) % len(x.shape)
    if x.perm[-1] != dim:
        x = ctx.in_layout(node.args[0], tuple(p for p in x.perm if p != dim) + (dim,))
    out = ctx.output(node, perm=x.perm)
    opts = tfl.SoftmaxOptionsT()
    opts.beta = 1.0
    ctx.b.op("SOFTMAX", [x.index], [out.index], opts)
    ctx.values[node] = out


SOFTMAX_MAX_CHANNELS = 2040  # [NXP-smax]
FIXED_OUTPUT = {  # [TFL-int8], as the quantizer fixes them (neutronq.backend.scheme)
    "aten.sigmoid.default": (SIGMOID_SCALE, SIGMOID_ZERO_POINT),
    "aten._softmax.default": (SOFTMAX_SCALE, SOFTMAX_ZERO_POINT),
    "aten.tanh.default": (TANH_SCALE, TANH_ZERO_POINT),
}


# --- softmax [NXP-smax] -------------------------------------------------------------------------
SOFTMAX_MAX_ROWS = 4096  # [NXP-smax-code]: N*H*W, the product of the other dims
SOFTMAX_MAX_SIZE = 524288  # [NXP-smax-code]: channels * N*H*W


def softmax_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-smax] the NPU's softmax runs over the channel dim, at most 2040 channels. The channel
    dim is dim 1 of an image (stored channels last) and the last dim of any other tensor (NXP's
    converter: dim 1 for a channels-first node, rank - 1 otherwise; attention scores [B, H, L, L]
    are not an image, so softmax(dim=-1) is over their channels). Either way the lowering puts
    that dim last in the TFLite graph, where SOFTMAX computes. [NXP-smax-code] ExecuTorch 1.5.1
    ``backends/nxp/.../softmax_converter.py`` L56-95 adds the product of the other dims at most
    4096 and the whole tensor at most 524288 elements."""
    dims = shape(node.args[0])
    rank = len(dims)
    dim = int(node.args[1]) % rank
    channel_dims = {1 if rank >= 2 else 0, rank - 1}
    if dim not in channel_dims:
        return (f"softmax over dim {dim}: the NPU's softmax runs over the channel dim "
                f"(dim 1 of an image or the last dim, here {sorted(channel_dims)})")
    if dims[dim] > SOFTMAX_MAX_CHANNELS:
        return f"softmax over {dims[dim]} channels exceeds the NPU limit of {SOFTMAX_MAX_CHANNELS}"
    rows = 1
    for i, d in enumerate(dims):
        if i != dim:
            rows *= d
    if rows > SOFTMAX_MAX_ROWS:
        return f"softmax over {rows} rows (the product of the other dims) exceeds the NPU limit of {SOFTMAX_MAX_ROWS}"
    if rows * dims[dim] > SOFTMAX_MAX_SIZE:
        return f"softmax of {rows * dims[dim]} elements exceeds the NPU limit of {SOFTMAX_MAX_SIZE}"
    return _fixed_output(node, spec, ep, res)


def _fixed_output(node, spec, ep, res) -> Optional[str]:
    """[TFL-int8] the int8 kernel's fixed output parameters (sigmoid 1/256, -128; tanh 1/128, 0)."""
    want = FIXED_OUTPUT[node_op(node)]
    got = output_qparams(node)
    if got is None or abs(got[0] - want[0]) > 1e-9 or got[1] != want[1]:
        return (f"{node_op(node)} output must be quantized with scale {want[0]} and zero point {want[1]} "
                f"(int8 kernel requirement), got {got}")
    return None


# --- constants ------------------------------------------------------------------------------------
def int8_scalar(ctx: ConversionContext, q: int, qparams: QParams, name: str) -> int:
    """A one-element int8 constant (it broadcasts against any shape)."""
    return ctx.b.tensor((1,), np.int8, qparams, name, np.array([q], np.int8))


def exact_scalar(ctx: ConversionContext, value: float, name: str) -> int:
    """The real ``value`` exactly: int8 +-127 (0 for zero) with scale |value| / 127."""
    if value == 0:
        return int8_scalar(ctx, 0, QParams.per_tensor(1.0, 0), name)
    return int8_scalar(ctx, 127 if value > 0 else -127, QParams.per_tensor(abs(value) / 127.0, 0), name)


def quantize_scalar(value: float, qparams: QParams) -> int:
    """``value`` in ``qparams`` the way PT2E's quantize_per_tensor rounds it (float32
    ``value * (1 / scale)``, half to even, then the zero point, clipped to int8)."""
    scaled = np.float32(value) * np.float32(1.0 / qparams.scale[0])
    return int(np.clip(np.round(scaled) + qparams.zero_point[0], -128, 127))


def _no_activation(options):
    options.fusedActivationFunction = tfl.ActivationFunctionType.NONE
    return options


# --- clamp / hardtanh with scalar bounds ------------------------------------------------------------
_KIND_OF_RANGE = {r: kind for kind, r in CLAMP_KERNEL_RANGES.items()}


def clamp_kind(node) -> Optional[str]:
    """The int8 TFLite relu op with the node's clamp range (RELU, RELU6, RELU_N1_TO_1,
    RELU_0_TO_1), or None."""
    return _KIND_OF_RANGE.get(clamp_range(node))


def convert_clamp(ctx: ConversionContext, node) -> None:
    """A relu op when one has the range (they requantize: own output parameters); otherwise
    MAXIMUM(x, low) then MINIMUM(., high) with the bounds as int8 constants in x's parameters,
    which the output shares (they compare raw int8 values): exactly PT2E's clamp."""
    x = ctx.act(node.args[0])
    out = ctx.output(node)
    kind = clamp_kind(node)
    if kind is not None:
        ctx.b.op(kind, [x.index], [out.index])
    else:
        lo, hi = clamp_range(node)
        steps = [(code, bound) for code, bound in (("MAXIMUM", lo), ("MINIMUM", hi)) if math.isfinite(bound)]
        cur = x.index
        for i, (code, bound) in enumerate(steps):
            last = i == len(steps) - 1
            dst = out.index if last else ctx.new_tensor(x.shape, x.qparams, f"{node.name}_{code.lower()}").index
            c = int8_scalar(ctx, quantize_scalar(bound, x.qparams), x.qparams, f"{node.name}_{code.lower()}_bound")
            ctx.b.op(code, [cur, c], [dst])
            cur = dst
    ctx.values[node] = out


def clamp_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-conv/clamp] a finite bound; relu ranges as RELU ops, other ranges as MINIMUM /
    MAXIMUM with the input's parameters on the output."""
    # [NXP-conv/clamp] L94-200: bounds (-1, 1), (0, 1), (0, 6), (0, None) are Relu ops; other
    # bounds are Min / Max, which need the input's quantization parameters on the output
    # (maximum_converter / minimum_converter: all inputs and the output share them).
    lo, hi = clamp_range(node)
    if not (math.isfinite(lo) or math.isfinite(hi)):
        return f"{node_op(node)} without a finite bound"
    if lo > hi:
        return f"{node_op(node)} with min {lo} > max {hi}"
    if clamp_kind(node) is None:
        return equal_io(node)
    return None


# --- hardsigmoid ---------------------------------------------------------------------------------
def convert_hardsigmoid(ctx: ConversionContext, node) -> None:
    """relu6(x + 3) / 6 as ADD(x, 3) with a fused RELU6 into a tensor of 6 x the output's scale
    (same zero point): its int8 values are already hardsigmoid's in the output's parameters.
    A MUL by the constant 2 of scale 1/12 (= 1/6) hands them on with a rescale of exactly 1/2,
    i.e. unchanged: TFLite has no op that copies int8 values into other parameters."""
    x = ctx.act(node.args[0])
    out = ctx.output(node)
    six = ctx.new_tensor(x.shape, QParams.per_tensor(6.0 * out.scale, out.zero_point), f"{node.name}_relu6")
    add = tfl.AddOptionsT()
    add.fusedActivationFunction = tfl.ActivationFunctionType.RELU6
    ctx.b.op("ADD", [x.index, exact_scalar(ctx, 3.0, f"{node.name}_three")], [six.index], add)
    sixth = int8_scalar(ctx, 2, QParams.per_tensor(1.0 / 12.0, 0), f"{node.name}_sixth")
    ctx.b.op("MUL", [six.index, sixth], [out.index], _no_activation(tfl.MulOptionsT()))
    ctx.values[node] = out


# --- gelu, leaky_relu, prelu ---------------------------------------------------------------------
def convert_gelu(ctx: ConversionContext, node) -> None:
    opts = tfl.GeluOptionsT()
    opts.approximate = node.kwargs.get("approximate", "none") == "tanh"
    x = ctx.act(node.args[0])
    out = ctx.output(node)
    ctx.b.op("GELU", [x.index], [out.index], opts)
    ctx.values[node] = out


def convert_leaky_relu(ctx: ConversionContext, node) -> None:
    opts = tfl.LeakyReluOptionsT()
    opts.alpha = float(arg(node, 1, "negative_slope", 0.01))
    x = ctx.act(node.args[0])
    out = ctx.output(node)
    ctx.b.op("LEAKY_RELU", [x.index], [out.index], opts)
    ctx.values[node] = out


def convert_prelu(ctx: ConversionContext, node) -> None:
    """PRELU with the slope as an int8 constant: PyTorch's slope runs along dim 1, which the
    channels-last layout stores last, where TFLite broadcasts a [C] alpha."""
    x = ctx.act(node.args[0])
    qc = ctx.qconst(node.args[1])
    alpha = ctx.int8_weights(qc.data.reshape(-1), qc, 0, f"{node.name}_alpha")
    out = ctx.output(node)
    ctx.b.op("PRELU", [x.index, alpha], [out.index])
    ctx.values[node] = out


def prelu_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-conv/prelu] two inputs, one with the output's element count; a constant slope."""
    # [NXP-conv/prelu] L24-55: exactly two inputs, one with the output's element count
    # (node_converter.py inputs_satisfy_broadcast_condition); a non-scalar slope over the
    # channel dim, which is where PyTorch's slope always is.
    w = node.args[1]
    if not is_weight_path(w, ep):
        return "prelu with a slope computed at run time: only a constant slope is lowered"
    count = math.prod(shape(node))
    if not any(math.prod(shape(a)) == count for a in node.args[:2]):
        return "prelu: neither input has the output's element count"
    if len(shape(node.args[0])) == 0:
        return "prelu of a 0-d tensor"
    return None


# --- silu ------------------------------------------------------------------------------------------
def convert_silu(ctx: ConversionContext, node) -> None:
    """x * sigmoid(x): LOGISTIC into its fixed int8 parameters (1/256, -128), then MUL."""
    x = ctx.act(node.args[0])
    sig = ctx.new_tensor(x.shape, QParams.per_tensor(SIGMOID_SCALE, SIGMOID_ZERO_POINT), f"{node.name}_sigmoid")
    ctx.b.op("LOGISTIC", [x.index], [sig.index])
    out = ctx.output(node)
    ctx.b.op("MUL", [x.index, sig.index], [out.index], _no_activation(tfl.MulOptionsT()))
    ctx.values[node] = out


# --- elu ---------------------------------------------------------------------------------------------
def convert_elu(ctx: ConversionContext, node) -> None:
    """elu(x) = max(x, alpha (exp(min(x, 0)) - 1)) for 0 < alpha <= 1 (alpha (e^x - 1) >= x for
    x <= 0, and 0 for x > 0). LiteRT's reference kernels have no int8 ELU, so:
    MINIMUM(x, 0) in x's parameters, EXP into [0, 1], [MUL by alpha,] SUB alpha into the output's
    parameters, x requantized to them (QUANTIZE), MAXIMUM of the two (equal parameters)."""
    x = ctx.act(node.args[0])
    out = ctx.output(node)
    alpha = float(arg(node, 1, "alpha", 1.0))
    name = node.name
    neg = ctx.new_tensor(x.shape, x.qparams, f"{name}_min0")
    ctx.b.op("MINIMUM", [x.index, int8_scalar(ctx, x.zero_point, x.qparams, f"{name}_zero")], [neg.index])
    exp = ctx.new_tensor(x.shape, QParams.per_tensor(1.0 / 255.0, -128), f"{name}_exp")
    ctx.b.op("EXP", [neg.index], [exp.index])
    if alpha != 1.0:  # alpha e^m in [0, alpha]: the constant alpha (127 x alpha/127), rescale 1/127
        scaled = ctx.new_tensor(x.shape, QParams.per_tensor(alpha / 255.0, -128), f"{name}_alpha_exp")
        ctx.b.op("MUL", [exp.index, exact_scalar(ctx, alpha, f"{name}_alpha")], [scaled.index],
                 _no_activation(tfl.MulOptionsT()))
        exp = scaled
    em1 = ctx.new_tensor(x.shape, out.qparams, f"{name}_expm1")
    ctx.b.op("SUB", [exp.index, exact_scalar(ctx, alpha, f"{name}_alpha_sub")], [em1.index],
             _no_activation(tfl.SubOptionsT()))
    xo = ctx.requantize(x, out.qparams, f"{name}_x")
    ctx.b.op("MAXIMUM", [xo.index, em1.index], [out.index])
    ctx.values[node] = out


def elu_limits(node, spec, ep, res) -> Optional[str]:
    """No NXP converter; the composite max(x, alpha (e^x - 1)) is elu only for 0 < alpha <= 1."""
    # no NXP converter (ELU is not in the 1.5.1 partitioner's map, no op-support.csv row); the
    # limits are the composite's: max(x, alpha (e^x - 1)) is elu only for 0 < alpha <= 1
    alpha = float(arg(node, 1, "alpha", 1.0))
    scale, input_scale = float(arg(node, 2, "scale", 1.0)), float(arg(node, 3, "input_scale", 1.0))
    if scale != 1.0 or input_scale != 1.0:
        return f"elu with scale {scale} / input_scale {input_scale} (selu-like): only 1 is lowered"
    if not 0.0 < alpha <= 1.0:
        return f"elu with alpha {alpha}: the int8 composite needs 0 < alpha <= 1"
    return None


# --- limits of ops NXP's reference backend does not convert ---------------------------------------
def _no_nxp_converter(op: str, lowered_as: str) -> NoPublishedLimit:
    return NoPublishedLimit(
        f"NXP's reference backend (ExecuTorch 1.5.1 backends/nxp: partitioner map, converters, "
        f"quantizer patterns) has no {op} and op-support.csv no row for it: no published limit. "
        f"Lowered as {lowered_as}, all int8 TFLite builtins")


_relu = _unary()
OPS = (
    OpLowering("relu", ("aten.relu.default", "aten.relu_.default", "aten.relu6.default"), _relu, NO_PUBLISHED_LIMIT,
               rules=("relu",), tflite=("RELU", "RELU6")),
    OpLowering("sigmoid", ("aten.sigmoid.default",), _unary("LOGISTIC"), _fixed_output, rules=("sigmoid",),
               tflite=("LOGISTIC",)),
    OpLowering("tanh", ("aten.tanh.default",), _unary("TANH"), _fixed_output, rules=("tanh",), tflite=("TANH",)),
    OpLowering("softmax", ("aten._softmax.default",), convert_softmax, softmax_limits, rules=("softmax",),
               tflite=("SOFTMAX",)),
    # NXP's converter runs hardswish with no limit beyond int8 in and out (the reference backend's
    # hardswish converter checks nothing else); kept whole rather than add / clamp / mul / div
    OpLowering("hardswish", ("aten.hardswish.default",), _unary("HARD_SWISH"), NO_PUBLISHED_LIMIT,
               rules=("hardswish",), tflite=("HARD_SWISH",), preserve=("aten.hardswish.default",)),
    # --- ops-unary ---------------------------------------------------------------------------------
    OpLowering("hardtanh", ("aten.hardtanh.default", "aten.hardtanh_.default"), convert_clamp, clamp_limits,
               rules=("hardtanh", "relu"),
               tflite=("RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "MAXIMUM", "MINIMUM")),
    OpLowering("clamp", ("aten.clamp.default",), convert_clamp, clamp_limits, rules=("clamp",),
               tflite=("RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "MAXIMUM", "MINIMUM")),
    # kept whole (edge would decompose it into add / clamp / clamp / div between one dq and one q)
    OpLowering("hardsigmoid", ("aten.hardsigmoid.default",), convert_hardsigmoid,
               _no_nxp_converter("hardsigmoid", "ADD (fused RELU6) + MUL"), rules=("hardsigmoid",),
               tflite=("ADD", "MUL"), preserve=("aten.hardsigmoid.default",)),
    OpLowering("gelu", ("aten.gelu.default",), convert_gelu, _no_nxp_converter("gelu", "GELU"), rules=("gelu",),
               tflite=("GELU",)),
    # [NXP-conv/leaky_relu] L24-40: nothing checked beyond int8 in and out
    OpLowering("leaky_relu", ("aten.leaky_relu.default",), convert_leaky_relu, NO_PUBLISHED_LIMIT,
               rules=("leaky_relu",), tflite=("LEAKY_RELU",)),
    # kept whole (edge: view, gt, mul, where), as NXP's reference does (preserve_ops)
    OpLowering("prelu", ("aten.prelu.default",), convert_prelu, prelu_limits, rules=("prelu",),
               tflite=("PRELU",), preserve=("aten.prelu.default",)),
    # kept whole: edge's sigmoid + mul would leave the sigmoid's output unquantized (float) between them
    OpLowering("silu", ("aten.silu.default",), convert_silu, _no_nxp_converter("silu", "LOGISTIC + MUL"),
               rules=("silu",), tflite=("LOGISTIC", "MUL"), preserve=("aten.silu.default",)),
    OpLowering("elu", ("aten.elu.default",), convert_elu, elu_limits, rules=("elu",),
               tflite=("MINIMUM", "EXP", "MUL", "SUB", "QUANTIZE", "MAXIMUM")),
)
