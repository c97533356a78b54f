"""Element-wise ops: add -> ADD, sub -> SUB, mul -> MUL, maximum / minimum -> MAXIMUM / MINIMUM,
pow(x, 2) / square -> MUL(x, x), abs -> ABS (int8); exp -> EXP, log -> LOG, rsqrt -> RSQRT,
sqrt -> SQRT, neg -> SUB(zero-point constant, x) (own output parameters).

An operand is an activation or an int8 constant (a buffer, or a Python scalar that
``aten_passes.scalars_to_constants`` turned into a tensor before quantization). Operands of
different rank are broadcast the PyTorch way: the lower-rank one is viewed with leading 1s first.
Both operands are read in one layout, the one their stored tensors share (else the canonical
one), and the output keeps it: element-wise ops on a [B, L, C] sequence or on attention scores
need no transposes. A quantized constant operand (a position embedding, a LayerNorm's gamma) is
written in that layout.

ADD, SUB and MUL requantize (inputs and output may have their own parameters); MAXIMUM and
MINIMUM compare raw int8 values, so their inputs and output must share one set of parameters
(the quantizer's ``SharedInputs`` rule gives them that; a constant is quantized in the
activation's parameters).

Sources of the limits:
  [NXP-binary] ExecuTorch 1.5.1, backends/nxp/backend/ir/converter/node_converters/ops_converters/
               add_tensor_converter.py L23-55, sub_tensor_converter.py L23-55,
               mul_tensor_converter.py L23-50, maximum_converter.py and minimum_converter.py
               L23-55: exactly two tensor inputs, one of which has the output's element count (the
               other is broadcast; ``NodeConverter.inputs_satisfy_broadcast_condition``,
               node_converter.py L477-503); add and sub with alpha 1; maximum and minimum with
               inputs and output sharing their quantization parameters
               (``_all_io_shares_quantization_parameters``, node_converter.py L506-538).
               (NXP's op-support.csv adds "input tensors of equal shape" for add and
               "tensor-size % 8 = 0" for mul; the converters of 1.5.1 do not check them.)
  [TFL-ref]    LiteRT 2.3.0 reference kernels, measured (notes/ops/REPORT.md): POW and SQUARE have
               no int8 kernel; MUL(x, x) is within one step of the exact square. DIV int8 is
               wrong for small numerators over large divisors (division stays on the CPU:
               ``quantizer.rules.CPU_ONLY_RULES``).
"""

from __future__ import annotations

from math import prod
from typing import Optional

import numpy as np
import torch

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext, TRef
from neutronq.lowering.edge import is_dq_of_constant, output_qparams
from neutronq.lowering.layout import canonical_perm
from neutronq.lowering.limits import input_qparams, same_qparams, shape
from neutronq.lowering.ops.base import NO_PUBLISHED_LIMIT, NoPublishedLimit, OpLowering
from neutronq.lowering.tflite_builder import tfl


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


def _binary(code: str, options=None):
    def convert(ctx: ConversionContext, node) -> None:
        rank = len(ctx.out_shape(node))
        perm = common_layout(ctx, node.args[:2], rank)
        a = operand_in(ctx, node.args[0], rank, perm, f"{node.name}_a")
        b = operand_in(ctx, node.args[1], rank, perm, f"{node.name}_b")
        out = ctx.output(node, perm=perm)
        opts = options() if options is not None else None
        if opts is not None and hasattr(opts, "fusedActivationFunction"):
            opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
        ctx.b.op(code, [a.index, b.index], [out.index], opts)
        ctx.values[node] = out

    return convert


def convert_square(ctx: ConversionContext, node) -> None:
    """x ** 2 as MUL(x, x): TFLite has no int8 POW or SQUARE [TFL-ref]."""
    rank = len(ctx.out_shape(node))
    perm = common_layout(ctx, node.args[:1], rank)
    x = operand_in(ctx, node.args[0], rank, perm, f"{node.name}_x")
    out = ctx.output(node, perm=perm)
    opts = tfl.MulOptionsT()
    opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
    ctx.b.op("MUL", [x.index, x.index], [out.index], opts)
    ctx.values[node] = out


def convert_abs(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    out = ctx.output(node)
    ctx.b.op("ABS", [x.index], [out.index])
    ctx.values[node] = out


# --- limits ----------------------------------------------------------------------------------------
def _alpha(node) -> float:
    alpha = node.kwargs.get("alpha", node.args[2] if len(node.args) > 2 else 1)
    return float(alpha)


def binary_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-binary] two tensor operands, one with the output's element count; alpha 1."""
    operands = node.args[:2]
    for a in operands:
        if not isinstance(a, torch.fx.Node):
            return (f"{node_op(node)} with a scalar operand {a!r}: quantize the model with NeutronQuantizer, "
                    "which makes scalars int8 constants")
    if "alpha" in node.kwargs or len(node.args) > 2:
        if _alpha(node) != 1.0:
            return f"{node_op(node)} with alpha {_alpha(node)}: the NPU's add and sub take alpha 1 only"
    count = prod(shape(node))
    if not any(prod(shape(a)) == count for a in operands):
        return (f"{node_op(node)} of shapes {list(shape(operands[0]))} and {list(shape(operands[1]))}: the NPU "
                "needs one input with the output's element count (the other broadcast to it)")
    return None


def shared_binary_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-binary] as ``binary_limits``, and inputs and output share their parameters (MAXIMUM
    and MINIMUM compare raw int8 values; LiteRT's kernels do not requantize, measured)."""
    reason = binary_limits(node, spec, ep, res)
    if reason is not None:
        return reason
    params = [input_qparams(a) for a in node.args[:2]] + [output_qparams(node)]
    if not all(same_qparams(params[0], p) for p in params[1:]):
        return (f"{node_op(node)} needs its inputs and output to share quantization parameters (got "
                f"{params}); quantize it with NeutronQuantizer, whose rule shares them")
    return None


def square_limits(node, spec, ep, res) -> Optional[str]:
    """pow: exponent 2 only, as MUL(x, x) [TFL-ref]; NXP publishes no pow converter, and the MUL
    it becomes has both operands of the output's shape ([NXP-binary] holds)."""
    exponent = node.args[1] if len(node.args) > 1 else node.kwargs.get("exponent")
    if not isinstance(exponent, (int, float)) or float(exponent) != 2.0:
        return (f"pow with exponent {exponent!r}: only exponent 2 is lowered (as MUL(x, x)); TFLite has no "
                "int8 POW")
    return None


# --- unary math (ops-unary) -----------------------------------------------------------------------
# Measured in LiteRT 2.3.0 BUILTIN_REF on all 256 int8 inputs against the rounded float function:
# EXP, LOG, RSQRT 0 steps (an input at its zero point, i.e. 0, gives
# -128 for LOG and 127 for RSQRT, as PT2E's -inf / inf saturate); SQRT rounds down: 1 step below
# on about half the values, never more.
def _math(code: str):
    """A unary op in its input's layout (element-wise: any layout computes the same)."""

    def convert(ctx: ConversionContext, node) -> None:
        x = ctx.stored(node.args[0])
        out = ctx.output(node, perm=x.perm)
        ctx.b.op(code, [x.index], [out.index])
        ctx.values[node] = out

    return convert


def convert_neg(ctx: ConversionContext, node) -> None:
    """SUB(0, x), the 0 an int8 constant in x's parameters (its zero point): TFLite's int8 NEG
    negates the raw int8 values whatever the parameters (wrong unless the zero point is 0 and the
    output shares the input's parameters, and -128 wraps); SUB requantizes into the output's."""
    x = ctx.act(node.args[0])
    zero = ctx.b.tensor((1,), np.int8, x.qparams, f"{node.name}_zero", np.array([x.zero_point], np.int8))
    out = ctx.output(node)
    opts = tfl.SubOptionsT()
    opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
    ctx.b.op("SUB", [zero, x.index], [out.index], opts)
    ctx.values[node] = out


# NXP's converters for exp, log, rsqrt check nothing beyond int8 in and out (ExecuTorch 1.5.1
# backends/nxp/.../ops_converters/{exp,log,rsqrt}_converter.py); its quantizer shares exp's input
# and output parameters (ExpPattern), which its converter does not require: here exp gets its
# own, as the output's range is not the input's. neg_converter.py: per-tensor parameters only
# (always so here), converted to Sub(zero point, x) as here.
_NO_SQRT_CONVERTER = NoPublishedLimit(
    "NXP's reference backend (ExecuTorch 1.5.1 backends/nxp) has no sqrt converter or quantizer "
    "pattern and op-support.csv no row for it: no published limit; TFLite's int8 SQRT runs")
MATH_OPS = (
    OpLowering("exp", ("aten.exp.default",), _math("EXP"), NO_PUBLISHED_LIMIT, rules=("exp",), tflite=("EXP",)),
    OpLowering("log", ("aten.log.default",), _math("LOG"), NO_PUBLISHED_LIMIT, rules=("log",), tflite=("LOG",)),
    OpLowering("rsqrt", ("aten.rsqrt.default",), _math("RSQRT"), NO_PUBLISHED_LIMIT, rules=("rsqrt",),
               tflite=("RSQRT",)),
    OpLowering("sqrt", ("aten.sqrt.default",), _math("SQRT"), _NO_SQRT_CONVERTER, rules=("sqrt",),
               tflite=("SQRT",)),
    OpLowering("neg", ("aten.neg.default",), convert_neg, NO_PUBLISHED_LIMIT, rules=("neg",), tflite=("SUB",)),
)

OPS = (
    OpLowering("add", ("aten.add.Tensor",), _binary("ADD", tfl.AddOptionsT), binary_limits, rules=("add",),
               tflite=("ADD",)),
    OpLowering("mul", ("aten.mul.Tensor",), _binary("MUL", tfl.MulOptionsT), binary_limits, rules=("mul",),
               tflite=("MUL",)),
    OpLowering("abs", ("aten.abs.default",), convert_abs, NO_PUBLISHED_LIMIT, rules=("abs",), tflite=("ABS",)),
    # --- binary ops with constants and scalars (ops-binary) ---------------------------------------
    # tensor - tensor and tensor - constant (x - 0.5, and 1 - x: rsub becomes sub before annotation)
    OpLowering("sub", ("aten.sub.Tensor",), _binary("SUB", tfl.SubOptionsT), binary_limits, rules=("sub",),
               tflite=("SUB",)),
    OpLowering("maximum", ("aten.maximum.default",), _binary("MAXIMUM"), shared_binary_limits,
               rules=("maximum",), tflite=("MAXIMUM",)),
    OpLowering("minimum", ("aten.minimum.default",), _binary("MINIMUM"), shared_binary_limits,
               rules=("minimum",), tflite=("MINIMUM",)),
    # x ** 2, torch.square (which becomes pow at the edge dialect)
    OpLowering("square", ("aten.pow.Tensor_Scalar",), convert_square, square_limits, rules=("pow",),
               tflite=("MUL",)),
) + MATH_OPS
