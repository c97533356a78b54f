"""aten.add.Tensor -> ADD, aten.mul.Tensor -> MUL, aten.abs -> ABS (int8, own output parameters);
exp -> EXP, log -> LOG, rsqrt -> RSQRT, sqrt -> SQRT, neg -> SUB(0, x) (own output parameters too).

Operands of different rank are broadcast the PyTorch way: the lower-rank one is viewed with
leading 1s first, so both are stored in the same channels-last layout.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.ops.base import NO_PUBLISHED_LIMIT, NoPublishedLimit, OpLowering


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


# --- unary math (ops-unary) -----------------------------------------------------------------------
# Measured in LiteRT 2.3.0 BUILTIN_REF on all 256 int8 inputs against the rounded float function:
# EXP, LOG, RSQRT 0 steps (an input at its zero point, i.e. 0, gives
# -128 for LOG and 127 for RSQRT, as PT2E's -inf / inf saturate); SQRT rounds down: 1 step below
# on about half the values, never more.
def _math(code: str):
    def convert(ctx: ConversionContext, node) -> None:
        x = ctx.act(node.args[0])
        out = ctx.output(node)
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
) + MATH_OPS
