"""Activations: relu / relu6 / hardtanh(-1, 1) -> RELU / RELU6 / RELU_N1_TO_1 (when not fused
into the conv or linear before them), sigmoid -> LOGISTIC, tanh -> TANH, softmax -> SOFTMAX,
hardswish -> HARD_SWISH.

LOGISTIC and SOFTMAX outputs are 1/256, zero point -128; TANH 1/128, zero point 0 (the
quantizer fixes them). SOFTMAX runs over the last stored axis: the softmax dim is stored there
(the channel dim of an image, the last dim of attention scores; see ``softmax_limits``).
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
