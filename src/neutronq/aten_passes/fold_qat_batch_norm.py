"""After ``convert_pt2e``: fold each QAT batch norm (``qat_batch_norm``) into its conv's bias.

``fuse_batch_norm_for_qat`` left, per conv / linear + BN unit::

    y = conv(x, dq(int8 of w * s), None);  z = qat_batch_norm(y, b, gamma, beta, mean, var, ...)

with ``s = gamma / sqrt(var + eps)``; the int8 weights already hold ``w * s``. In eval the unit
computes ``y + beta + (b - mean) * s``, so this pass gives the conv that float bias and drops the
``qat_batch_norm`` node. ``QuantizeFusedConvBnBiasAtenPass`` then quantizes the bias to int32.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule, Node

from neutronq.aten_passes.fuse_batch_norm_for_qat import qat_batch_norm
from neutronq.fx import get_attr_value, register_constant

__all__ = ["fold_qat_batch_norm"]


def fold_qat_batch_norm(model: GraphModule) -> int:
    """Folds every ``qat_batch_norm`` node into its producer's bias; returns how many."""
    folded = 0
    for bn in list(model.graph.nodes):
        if bn.op != "call_function" or bn.target is not qat_batch_norm:
            continue
        op, conv_bias, gamma, beta, mean, var, _momentum, eps = bn.args[:8]
        values = [get_attr_value(model, n) for n in (gamma, beta, mean, var)]
        if any(v is None for v in values) or not isinstance(op, Node) or len(op.users) != 1:
            raise ValueError(
                f"Cannot fold QAT batch norm {bn.name}: expected its conv/linear as the only user "
                "of that op and its parameters as module attributes. Was the graph changed after "
                "prepare_qat_pt2e?"
            )
        g, b, m, v = (t.detach().float() for t in values)
        scale = g / torch.sqrt(v + eps)
        bias = b - m * scale
        if conv_bias is not None:
            cb = get_attr_value(model, conv_bias)
            if cb is None:
                raise ValueError(f"Cannot fold QAT batch norm {bn.name}: its conv bias is not a constant.")
            bias = bias + cb.detach().float() * scale
        bias_node = register_constant(model, f"{op.name}_bias", bias, op)
        args = list(op.args) + [None] * max(0, 3 - len(op.args))
        args[2] = bias_node
        op.args = tuple(args)
        bn.replace_all_uses_with(op)
        model.graph.erase_node(bn)
        folded += 1
    if folded:
        model.graph.eliminate_dead_code()
        model.recompile()
    return folded
