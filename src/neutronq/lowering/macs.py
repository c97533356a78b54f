"""Multiply-accumulate counts of the ops that carry them (conv, transposed conv, fully connected,
matmul), on ATen graphs (``torch.export``) and edge graphs alike. The partitioner's NPU share and
the report's per-op figures both count with this."""

from __future__ import annotations

import math

from torch.fx import Node

from neutronq.fx import op_name, tensor_shape

__all__ = ["macs"]

_CONVS = ("convolution", "conv2d", "conv1d", "conv3d", "conv_transpose1d", "conv_transpose2d")


def macs(node: Node) -> int:
    """Multiply-accumulates of one conv / linear / matmul node (0 for other ops)."""
    if node.op != "call_function":
        return 0
    name = op_name(node.target)
    base = name.split(".")[1] if name.count(".") >= 2 else name
    out = tensor_shape(node)
    if out is None:
        return 0
    out_numel = math.prod(out)
    try:
        if base in _CONVS:
            weight = tensor_shape(node.args[1])
            transposed = base.startswith("conv_transpose") or (
                base == "convolution" and len(node.args) > 6 and bool(node.args[6]))
            if weight is None:
                return 0
            if transposed:
                inp = tensor_shape(node.args[0])
                return math.prod(inp) * weight[1] * math.prod(weight[2:]) if inp else 0
            return out_numel * weight[1] * math.prod(weight[2:])
        if base == "linear":
            weight = tensor_shape(node.args[1])
            return out_numel * weight[-1] if weight else 0
        if base == "addmm":
            a = tensor_shape(node.args[1])
            return out_numel * a[-1] if a else 0
        if base in ("mm", "bmm", "matmul"):
            a = tensor_shape(node.args[0])
            return out_numel * a[-1] if a else 0
    except (IndexError, TypeError):
        return 0
    return 0
