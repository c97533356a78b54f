"""Activations: relu / relu6 / hardtanh(-1, 1) -> RELU / RELU6 / RELU_N1_TO_1 (when not fused
into the conv or linear before them), sigmoid -> LOGISTIC, tanh -> TANH, softmax -> SOFTMAX,
hardswish -> HARD_SWISH.

LOGISTIC and SOFTMAX outputs are 1/256, zero point -128; TANH 1/128, zero point 0 (the
quantizer fixes them). SOFTMAX runs over the last stored axis: PyTorch's channel dim.
"""

from __future__ import annotations

from typing import Optional

from neutronq.backend.scheme import (
    SIGMOID_SCALE,
    SIGMOID_ZERO_POINT,
    SOFTMAX_SCALE,
    SOFTMAX_ZERO_POINT,
    TANH_SCALE,
    TANH_ZERO_POINT,
)
from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.edge import activation_kind, output_qparams
from neutronq.lowering.limits import shape
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.ops.base import NO_PUBLISHED_LIMIT, OpLowering


def _unary(code=None, options=None):
    def convert(ctx: ConversionContext, node) -> None:
        x = ctx.act(node.args[0])
        out = ctx.output(node)
        ctx.b.op(code or activation_kind(node), [x.index], [out.index], options() if options else None)
        ctx.values[node] = out

    return convert


def convert_softmax(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    out = ctx.output(node)
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
def softmax_limits(node, spec, ep, res) -> Optional[str]:
    dims = shape(node.args[0])
    rank = len(dims)
    dim = int(node.args[1]) % rank
    channel = 1 if rank >= 2 else 0
    if dim != channel:
        return f"softmax over dim {dim}: the NPU's softmax runs over the channel dim (1) only"
    if dims[channel] > SOFTMAX_MAX_CHANNELS:
        return f"softmax over {dims[channel]} channels exceeds the NPU limit of {SOFTMAX_MAX_CHANNELS}"
    return _fixed_output(node, spec, ep, res)


def _fixed_output(node, spec, ep, res) -> Optional[str]:
    want = FIXED_OUTPUT[node_op(node)]
    got = output_qparams(node)
    if got is None or abs(got[0] - want[0]) > 1e-9 or got[1] != want[1]:
        return (f"{node_op(node)} output must be quantized with scale {want[0]} and zero point {want[1]} "
                f"(int8 kernel requirement), got {got}")
    return None


def hardtanh_limits(node, spec, ep, res) -> Optional[str]:
    if activation_kind(node) is None:
        return "hardtanh with a range other than (0, 6) or (-1, 1) has no int8 NPU kernel"
    return None


_relu = _unary()
OPS = (
    OpLowering("relu", ("aten.relu.default", "aten.relu_.default", "aten.relu6.default"), _relu, NO_PUBLISHED_LIMIT,
               rules=("relu",), tflite=("RELU", "RELU6")),
    OpLowering("hardtanh", ("aten.hardtanh.default", "aten.hardtanh_.default"), _relu, hardtanh_limits,
               rules=("hardtanh", "relu"), tflite=("RELU6", "RELU_N1_TO_1")),
    OpLowering("sigmoid", ("aten.sigmoid.default",), _unary("LOGISTIC"), _fixed_output, rules=("sigmoid",),
               tflite=("LOGISTIC",)),
    OpLowering("tanh", ("aten.tanh.default",), _unary("TANH"), _fixed_output, rules=("tanh",), tflite=("TANH",)),
    OpLowering("softmax", ("aten._softmax.default",), convert_softmax, softmax_limits, rules=("softmax",),
               tflite=("SOFTMAX",)),
    # NXP's converter runs hardswish with no limit beyond int8 in and out (the reference backend's
    # hardswish converter checks nothing else); kept whole rather than add / clamp / mul / div
    OpLowering("hardswish", ("aten.hardswish.default",), _unary("HARD_SWISH"), NO_PUBLISHED_LIMIT,
               rules=("hardswish",), tflite=("HARD_SWISH",), preserve=("aten.hardswish.default",)),
)
