"""aten.addmm / aten.mm with a constant (transposed) weight -> FULLY_CONNECTED.

``nn.Linear`` reaches the edge dialect as ``addmm(bias, x, permute_copy(weight))`` (``mm``
without bias). Weights [out, in] int8, per tensor or per axis 0; bias int32 (input x weight).
"""

from __future__ import annotations

import numpy as np

from neutronq.lowering import graph as g
from neutronq.lowering.context import ConversionContext, QConst
from neutronq.lowering.ops.conv import ACTIVATIONS
from neutronq.lowering.tflite_builder import tfl


def _fc(ctx: ConversionContext, node, x_node, wt_node, b_node) -> None:
    x = ctx.act(x_node)
    wt = ctx.qconst(wt_node)  # [in, out]
    w = QConst(np.ascontiguousarray(wt.data.T), wt.scales, wt.zero_points, 1 - wt.axis if wt.per_channel else 0)
    bias = ctx.qconst(b_node) if b_node is not None else None
    out_node, act = g.fused_activation(node)
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


CONVERTERS = {"aten.addmm.default": convert_addmm, "aten.mm.default": convert_mm}
