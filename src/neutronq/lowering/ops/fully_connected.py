"""aten.addmm / aten.mm with a constant (transposed) weight -> FULLY_CONNECTED.

``nn.Linear`` reaches the edge dialect as ``addmm(bias, x, permute_copy(weight))`` (``mm``
without bias). Weights [out, in] int8, per tensor or per axis 0; bias int32 (input x weight).

A linear of a rank >= 3 input is kept whole (``linear_nd``, ``preserve``): the edge dialect
decomposes it into view + addmm + view only when the input's strides let it fold the leading
dims; otherwise (a [B, L, C] sequence that went through element-wise ops after a transpose, as
a ViT's tokens after its patch embedding, with LayerNorm decomposed) into expand + bmm + add of
the bias, which no NPU op matches.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext, QConst
from neutronq.lowering.edge import fused_activation, is_dq_of_constant, is_weight_path
from neutronq.lowering.limits import shape
from neutronq.lowering.ops.conv import ACTIVATIONS
from neutronq.lowering.ops.matmul import convert_mm_of_activations, matmul_limits
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.ops.base import OpLowering


def _fc(ctx: ConversionContext, node, x_node, wt_node, b_node) -> None:
    x = ctx.act(x_node)
    wt = ctx.qconst(wt_node)  # [in, out]
    w = QConst(np.ascontiguousarray(wt.data.T), wt.scales, wt.zero_points, 1 - wt.axis if wt.per_channel else 0)
    bias = ctx.qconst(b_node) if b_node is not None else None
    out_node, act = fused_activation(node)
    o = w.data.shape[0]
    w_idx = ctx.int8_weights(w.data, w, axis=0, name=f"{node.name}_weights")
    b_idx = ctx.int32_bias(bias, x.scale, w, o, f"{node.name}_bias")
    out = ctx.new_tensor(ctx.out_shape(node), ctx.out_qparams(out_node), node.name)
    opts = tfl.FullyConnectedOptionsT()
    opts.fusedActivationFunction = ACTIVATIONS[act]
    ctx.b.op("FULLY_CONNECTED", [x.index, w_idx, b_idx], [out.index], opts)
    ctx.values[node] = out
    if out_node is not node:
        ctx.values[out_node] = out
        ctx.done.add(out_node)


def convert_addmm(ctx, node):
    _fc(ctx, node, node.args[1], node.args[2], node.args[0])


def convert_mm(ctx, node):
    if not is_weight_path(node.args[1], ctx.ep):  # two activations: a batch matmul
        convert_mm_of_activations(ctx, node)
        return
    _fc(ctx, node, node.args[0], node.args[1], None)


def convert_linear_nd(ctx: ConversionContext, node) -> None:
    """aten.linear of a rank >= 3 input: FULLY_CONNECTED on the [rows, in] view of the input
    (stored in PyTorch's order), the output viewed back."""
    x_node, w_node = node.args[0], node.args[1]
    b_node = node.args[2] if len(node.args) > 2 else None
    xs = ctx.out_shape(x_node)
    rows = 1
    for d in xs[:-1]:
        rows *= d
    x = ctx.view(ctx.stored(x_node), (rows, xs[-1]), name=f"{node.name}_rows", perm=(0, 1))
    w = ctx.qconst(w_node)  # [out, in]
    bias = ctx.qconst(b_node) if b_node is not None else None
    o = w.data.shape[0]
    w_idx = ctx.int8_weights(w.data, w, axis=0, name=f"{node.name}_weights")
    b_idx = ctx.int32_bias(bias, x.scale, w, o, f"{node.name}_bias")
    out = ctx.new_tensor((rows, o), ctx.out_qparams(node), f"{node.name}_rows_out")
    opts = tfl.FullyConnectedOptionsT()
    opts.fusedActivationFunction = ACTIVATIONS["NONE"]
    ctx.b.op("FULLY_CONNECTED", [x.index, w_idx, b_idx], [out.index], opts)
    ctx.values[node] = ctx.free_view(out, ctx.out_shape(node), name=node.name)


def linear_nd_limits(node, spec, ep, res) -> Optional[str]:
    x, w = node.args[0], node.args[1]
    b = node.args[2] if len(node.args) > 2 else None
    if len(shape(x)) < 3:
        return "a linear of a 2-D input is lowered as the addmm it decomposes into"
    if not is_dq_of_constant(w, ep):
        return "linear weight is not an int8 constant"
    if b is not None and not is_dq_of_constant(b, ep):
        return "linear bias is not an int32 constant"
    return None


# --- fully connected -----------------------------------------------------------------------------
def fc_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-fc] a constant 2-D weight (a product of two activations is BATCH_MATMUL's); addmm with
    alpha = beta = 1 and an int32 constant bias; a 2-D input (ExecuTorch 1.5.1 backends/nxp
    mm_converter.py / addmm_converter.py: static weights)."""
    name = node_op(node)
    x, wt = (node.args[1], node.args[2]) if name == "aten.addmm.default" else (node.args[0], node.args[1])
    if not is_weight_path(wt, ep):
        if name == "aten.mm.default":  # two activations: a batch matmul (lowering/ops/matmul.py)
            return matmul_limits(node, spec, ep, res)
        return "matrix multiply of two activations: the NPU's fully-connected op needs a constant weight"
    if name == "aten.addmm.default":
        if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
            return "addmm with beta or alpha other than 1"
        if not is_dq_of_constant(node.args[0], ep):
            return "addmm bias is not an int32 constant"
    if len(shape(x)) != 2:
        return "fully connected input must be 2-D"
    return None


OPS = (
    OpLowering("linear", ("aten.addmm.default",), convert_addmm, fc_limits, rules=("linear", "addmm"),
               tflite=("FULLY_CONNECTED",)),
    # a linear of rank >= 3, kept from decomposition (see the module doc)
    OpLowering("linear_nd", ("aten.linear.default",), convert_linear_nd, linear_nd_limits, rules=("linear",),
               tflite=("FULLY_CONNECTED", "RESHAPE"), preserve=("aten.linear.default",)),
    # mm of two activations (x @ y of rank 2) goes to matmul.py's BATCH_MATMUL
    OpLowering("linear_no_bias", ("aten.mm.default",), convert_mm, fc_limits, rules=("linear", "matmul"),
               tflite=("FULLY_CONNECTED", "BATCH_MATMUL")),
)
