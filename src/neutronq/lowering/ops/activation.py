"""Activations: relu / relu6 / hardtanh(-1, 1) -> RELU / RELU6 / RELU_N1_TO_1 (when not fused
into the conv or linear before them), sigmoid -> LOGISTIC, tanh -> TANH, softmax -> SOFTMAX.

LOGISTIC and SOFTMAX outputs are 1/256, zero point -128; TANH 1/128, zero point 0 (the
quantizer fixes them). SOFTMAX runs over the last stored axis: PyTorch's channel dim.
"""

from __future__ import annotations

from neutronq.lowering import graph as g
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.tflite_builder import tfl


def _unary(code=None, options=None):
    def convert(ctx: ConversionContext, node) -> None:
        x = ctx.act(node.args[0])
        out = ctx.output(node)
        ctx.b.op(code or g.activation_kind(node), [x.index], [out.index], options() if options else None)
        ctx.values[node] = out

    return convert


def convert_softmax(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    out = ctx.output(node)
    opts = tfl.SoftmaxOptionsT()
    opts.beta = 1.0
    ctx.b.op("SOFTMAX", [x.index], [out.index], opts)
    ctx.values[node] = out


_relu = _unary()
CONVERTERS = {
    "aten.relu.default": _relu,
    "aten.relu_.default": _relu,
    "aten.relu6.default": _relu,
    "aten.hardtanh.default": _relu,
    "aten.hardtanh_.default": _relu,
    "aten.sigmoid.default": _unary("LOGISTIC"),
    "aten.tanh.default": _unary("TANH"),
    "aten._softmax.default": convert_softmax,
}
