"""aten.add.Tensor -> ADD, aten.mul.Tensor -> MUL, aten.abs -> ABS (int8, own output parameters).

Operands of different rank are broadcast the PyTorch way: the lower-rank one is viewed with
leading 1s first, so both are stored in the same channels-last layout.
"""

from __future__ import annotations

from typing import Optional

import torch

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.ops.base import NO_PUBLISHED_LIMIT, OpLowering


def _binary(code: str, options):
    def convert(ctx: ConversionContext, node) -> None:
        a, b = ctx.act(node.args[0]), ctx.act(node.args[1])
        rank = max(len(a.shape), len(b.shape))
        a = a if len(a.shape) == rank else ctx.view(a, (1,) * (rank - len(a.shape)) + a.shape, name=f"{node.name}_a")
        b = b if len(b.shape) == rank else ctx.view(b, (1,) * (rank - len(b.shape)) + b.shape, name=f"{node.name}_b")
        out = ctx.output(node)
        opts = options()
        opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
        ctx.b.op(code, [a.index, b.index], [out.index], opts)
        ctx.values[node] = out

    return convert


def convert_abs(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    out = ctx.output(node)
    ctx.b.op("ABS", [x.index], [out.index])
    ctx.values[node] = out


def binary_limits(node, spec, ep, res) -> Optional[str]:
    for a in node.args[:2]:
        if not isinstance(a, torch.fx.Node):
            return f"{node_op(node)} with a scalar operand {a!r}: only tensor operands are lowered"
    return None


OPS = (
    OpLowering("add", ("aten.add.Tensor",), _binary("ADD", tfl.AddOptionsT), binary_limits, rules=("add",),
               tflite=("ADD",)),
    OpLowering("mul", ("aten.mul.Tensor",), _binary("MUL", tfl.MulOptionsT), binary_limits, rules=("mul",),
               tflite=("MUL",)),
    OpLowering("abs", ("aten.abs.default",), convert_abs, NO_PUBLISHED_LIMIT, rules=("abs",), tflite=("ABS",)),
)
