"""aten.addmm / aten.mm with a constant (transposed) weight -> FULLY_CONNECTED.

``nn.Linear`` reaches the edge dialect as ``addmm(bias, x, permute_copy(weight))`` (``mm``
without bias). Weights [out, in] int8, per tensor or per axis 0; bias int32 (input x weight).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext, QConst
from neutronq.lowering.edge import fused_activation, is_dq_of_constant, is_weight_path
from neutronq.lowering.limits import shape
from neutronq.lowering.ops.conv import ACTIVATIONS
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
    _fc(ctx, node, node.args[0], node.args[1], None)


# --- fully connected -----------------------------------------------------------------------------
def fc_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-fc] a constant 2-D weight (a product of two activations is BATCH_MATMUL's); addmm with
    alpha = beta = 1 and an int32 constant bias; a 2-D input (ExecuTorch 1.5.1 backends/nxp
    mm_converter.py / addmm_converter.py: static weights)."""
    name = node_op(node)
    x, wt = (node.args[1], node.args[2]) if name == "aten.addmm.default" else (node.args[0], node.args[1])
    if not is_weight_path(wt, ep):
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
    OpLowering("linear_no_bias", ("aten.mm.default",), convert_mm, fc_limits, rules=("linear",),
               tflite=("FULLY_CONNECTED",)),
)
