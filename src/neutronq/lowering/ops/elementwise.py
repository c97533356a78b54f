"""aten.add.Tensor -> ADD, aten.mul.Tensor -> MUL, aten.sub.Tensor -> SUB, aten.abs -> ABS,
aten.rsqrt -> RSQRT (int8, own output parameters).

Operands of different rank are broadcast the PyTorch way: the lower-rank one is viewed with
leading 1s first. Both operands are read in one layout, the one their stored tensors share (else
the canonical one), and the output keeps it: element-wise ops on a [B, L, C] sequence or on
attention scores need no transposes. A quantized constant operand (a position embedding, a
LayerNorm's gamma) is written in that layout.
"""

from __future__ import annotations

from typing import Optional

import torch

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext, TRef
from neutronq.lowering.edge import is_dq_of_constant
from neutronq.lowering.layout import canonical_perm
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.limits import shape as ctx_shape
from neutronq.lowering.ops.base import NO_PUBLISHED_LIMIT, NoPublishedLimit, OpLowering


def common_layout(ctx: ConversionContext, operands, rank: int) -> tuple[int, ...]:
    """The layout of the largest stored non-constant operand of rank ``rank`` (the others, when
    stored otherwise, are transposed to it; a broadcast one usually only reshaped), else
    canonical."""
    full = [a for a in operands if not is_dq_of_constant(a, ctx.ep) and len(ctx.out_shape(a)) == rank]
    if not full:
        return canonical_perm(rank)

    def numel(a) -> int:
        n = 1
        for d in ctx.out_shape(a):
            n *= d
        return n

    return ctx.stored(max(full, key=numel)).perm


def operand_in(ctx: ConversionContext, node, rank: int, perm, name: str) -> TRef:
    """Operand ``node`` with leading 1s up to ``rank``, stored as ``perm``."""
    shape = ctx.out_shape(node)
    full = (1,) * (rank - len(shape)) + tuple(shape)
    if is_dq_of_constant(node, ctx.ep):
        return ctx.constant_as(node, full, perm)
    if len(shape) == rank:
        return ctx.in_layout(node, perm)
    return ctx.view(ctx.stored(node), full, name=name, perm=perm)


def _binary(code: str, options):
    def convert(ctx: ConversionContext, node) -> None:
        rank = len(ctx.out_shape(node))
        perm = common_layout(ctx, node.args[:2], rank)
        a = operand_in(ctx, node.args[0], rank, perm, f"{node.name}_a")
        b = operand_in(ctx, node.args[1], rank, perm, f"{node.name}_b")
        out = ctx.output(node, perm=perm)
        opts = options()
        opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
        ctx.b.op(code, [a.index, b.index], [out.index], opts)
        ctx.values[node] = out

    return convert


def _unary(code: str):
    def convert(ctx: ConversionContext, node) -> None:
        x = ctx.stored(node.args[0])
        out = ctx.output(node, perm=x.perm)
        ctx.b.op(code, [x.index], [out.index])
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


def _numel(node) -> int:
    n = 1
    for d in ctx_shape(node):
        n *= d
    return n


def sub_limits(node, spec, ep, res) -> Optional[str]:
    # NXP's sub converter (ExecuTorch 1.5.1 backends/nxp/.../sub_tensor_converter.py L23-55): two
    # tensor arguments, alpha 1, one of them with the output's element count (a broadcast of the
    # other one only)
    reason = binary_limits(node, spec, ep, res)
    if reason is not None:
        return reason
    alpha = node.kwargs.get("alpha", node.args[2] if len(node.args) > 2 else 1)
    if alpha != 1:
        return f"sub with alpha {alpha}: the NPU's sub has alpha 1"
    if not any(_numel(a) == _numel(node) for a in node.args[:2]):
        return "sub where both operands are broadcast to the output's shape: the NPU broadcasts one at most"
    return None


OPS = (
    OpLowering("add", ("aten.add.Tensor",), _binary("ADD", tfl.AddOptionsT), binary_limits, rules=("add",),
               tflite=("ADD",)),
    OpLowering("mul", ("aten.mul.Tensor",), _binary("MUL", tfl.MulOptionsT), binary_limits, rules=("mul",),
               tflite=("MUL",)),
    OpLowering("abs", ("aten.abs.default",), convert_abs, NO_PUBLISHED_LIMIT, rules=("abs",), tflite=("ABS",)),
    # --- attention: sub, rsqrt ---------------------------------------------------------------
    OpLowering("sub", ("aten.sub.Tensor",), _binary("SUB", tfl.SubOptionsT), sub_limits, rules=("sub",),
               tflite=("SUB",)),
    OpLowering("rsqrt", ("aten.rsqrt.default",), _unary("RSQRT"), NoPublishedLimit(
        "NXP's rsqrt converter (ExecuTorch 1.5.1 backends/nxp/.../rsqrt_converter.py L24-45) checks int8 in and "
        "out only; no row for rsqrt in NXP's op-support table"), rules=("rsqrt",), tflite=("RSQRT",)),
)
