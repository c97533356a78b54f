"""Multiply-accumulate counts of the ops that carry them (conv, fully connected)."""

from __future__ import annotations

import math

from neutronq.lowering import graph as g

__all__ = ["macs"]


def macs(node) -> int:
    name = g.node_op(node) if node.op == "call_function" else ""
    out = g.tensor_val(node)
    if out is None:
        return 0
    if name == "aten.convolution.default":
        w = g.tensor_val(node.args[1])
        return out.numel() * math.prod(w.shape[1:])
    if name in ("aten.addmm.default", "aten.mm.default"):
        x = g.tensor_val(node.args[1] if name == "aten.addmm.default" else node.args[0])
        return out.numel() * x.shape[-1]
    return 0
