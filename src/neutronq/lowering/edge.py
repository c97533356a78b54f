"""Facts about edge-dialect graph nodes that the partitioner and the TFLite lowering share:
quantize / dequantize nodes, constants, fused activations, output quantization parameters.

Op names are ``neutronq.fx.op_name``'s, e.g. ``"aten.convolution.default"``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from executorch.exir import EdgeCompileConfig
from torch.fx import Node

from neutronq.backend.scheme import FUSED_ACTIVATION_RANGES
from neutronq.fx import hardtanh_range, node_op

__all__ = [
    "is_q",
    "is_dq",
    "is_dq_of_constant",
    "is_constant_placeholder",
    "constant_value",
    "is_weight_path",
    "activation_kind",
    "fused_activation",
    "dq_params",
    "output_qparams",
    "int8_activation_dq",
    "DATA_MOVEMENT",
    "IDENTITY",
    "QUANTIZE",
    "DEQUANTIZE",
    "compile_config",
]

QUANTIZE = {"quantized_decomposed.quantize_per_tensor.default"}
DEQUANTIZE = {
    "quantized_decomposed.dequantize_per_tensor.default",
    "quantized_decomposed.dequantize_per_channel.default",
}
# ops that only move or copy data: their output shares the input's quantization parameters
IDENTITY = {
    "aten.clone.default",
    "dim_order_ops._clone_dim_order.default",
    "aten.alias_copy.default",
    "aten.dropout.default",
}
DATA_MOVEMENT = IDENTITY | {
    "aten.view_copy.default",
    "aten.permute_copy.default",
    "aten.slice_copy.Tensor",
    "aten.squeeze_copy.dims",
    "aten.unsqueeze_copy.default",
    "aten.cat.default",  # data movement when it has one input; see partitioner
    "aten.split_with_sizes_copy.default",
    "aten.expand_copy.default",  # matmul's decomposition: before the view to bmm's rank 3
}
# ops whose int8 output parameters are the ones of the conv / linear that feeds them
_FUSABLE_AFTER = {"aten.convolution.default", "aten.addmm.default", "aten.mm.default"}


def is_q(node) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and node_op(node) in QUANTIZE


def is_dq(node) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and node_op(node) in DEQUANTIZE


def is_constant_placeholder(node, ep) -> bool:
    if not isinstance(node, Node) or node.op != "placeholder":
        return False
    sig = ep.graph_signature
    return (node.name in sig.inputs_to_parameters or node.name in sig.inputs_to_buffers
            or node.name in sig.inputs_to_lifted_tensor_constants)


def constant_value(node: Node, ep) -> torch.Tensor:
    sig = ep.graph_signature
    if node.name in sig.inputs_to_parameters:
        return ep.state_dict[sig.inputs_to_parameters[node.name]]
    if node.name in sig.inputs_to_buffers:
        name = sig.inputs_to_buffers[node.name]
        return ep.state_dict[name] if name in ep.state_dict else ep.constants[name]
    return ep.constants[sig.inputs_to_lifted_tensor_constants[node.name]]


def is_dq_of_constant(node, ep) -> bool:
    return is_dq(node) and is_constant_placeholder(node.args[0], ep)


def is_weight_path(node, ep) -> bool:
    """A dequantized constant, possibly transposed (``permute_copy`` of a linear's weight)."""
    if is_dq_of_constant(node, ep):
        return True
    return (isinstance(node, Node) and node.op == "call_function"
            and node_op(node) == "aten.permute_copy.default" and is_dq_of_constant(node.args[0], ep))


def activation_kind(node: Node) -> Optional[str]:
    """``"RELU"``, ``"RELU6"`` or ``"RELU_N1_TO_1"`` when ``node`` is that activation, else None."""
    name = node_op(node)
    if name in ("aten.relu.default", "aten.relu_.default"):
        return "RELU"
    if name in ("aten.hardtanh.default", "aten.hardtanh_.default", "aten.relu6.default"):
        bounded = {r: kind for kind, r in FUSED_ACTIVATION_RANGES.items() if kind != "RELU"}
        return bounded.get(hardtanh_range(node))
    return None


def fused_activation(node: Node) -> tuple[Node, str]:
    """(the unit's output node, the TFLite fused activation name) of a conv / linear node."""
    users = list(node.users)
    if node_op(node) in _FUSABLE_AFTER and len(users) == 1 and activation_kind(users[0]) is not None:
        return users[0], activation_kind(users[0])
    return node, "NONE"


def dq_params(node: Node, ep=None):
    """(scales array, zero points array, axis) of a dequantize / quantize node."""
    name = node_op(node)
    if name.endswith("per_channel.default"):
        scales = node.args[1]
        zps = node.args[2]
        scales = constant_value(scales, ep) if isinstance(scales, Node) else scales
        zps = constant_value(zps, ep) if isinstance(zps, Node) else zps
        return (np.asarray(scales, dtype=np.float64).reshape(-1),
                np.asarray(zps, dtype=np.int64).reshape(-1), int(node.args[3]))
    return np.array([float(node.args[1])]), np.array([int(node.args[2])]), 0


def output_qparams(node: Node) -> Optional[tuple[float, int]]:
    """The int8 (scale, zero point) that the value of ``node`` is quantized with.

    The first quantize among its users; through a single-user fused activation or
    data-movement op otherwise. A data-movement op with no quantize after it (a view feeding a
    linear's addmm) carries its input's parameters. ``None`` when the value is never quantized.
    """
    found = _downstream_qparams(node)
    if found is None and node_op(node) in _SHARES_INPUT and isinstance(node.args[0], Node):
        found = _upstream_qparams(node.args[0])
    return found


_SHARES_INPUT = IDENTITY | {"aten.view_copy.default", "aten.permute_copy.default",
                            "aten.squeeze_copy.dims", "aten.unsqueeze_copy.default",
                            # a zero pad that to_edge put before a conv (padding="same", even kernel)
                            "aten.constant_pad_nd.default",
                            "aten.expand_copy.default"}


def _upstream_qparams(node: Node) -> Optional[tuple[float, int]]:
    if is_dq(node) and node_op(node).endswith("per_tensor.default"):
        return float(node.args[1]), int(node.args[2])
    if node_op(node) in _SHARES_INPUT and isinstance(node.args[0], Node):
        return _upstream_qparams(node.args[0])
    return _downstream_qparams(node)


def _downstream_qparams(node: Node) -> Optional[tuple[float, int]]:
    users = list(node.users)
    for u in users:
        if is_q(u) and u.args[5] == torch.int8:
            return float(u.args[1]), int(u.args[2])
    if len(users) == 1:
        u = users[0]
        if node_op(u) == "getitem" and u.args[1] == 0:
            return _downstream_qparams(u)
        if node_op(u) in _SHARES_INPUT:
            return _downstream_qparams(u)
        if activation_kind(u) is not None and fused_activation(node)[0] is u:
            return _downstream_qparams(u)
    return None


def int8_activation_dq(node) -> bool:
    """A per-tensor int8 dequantize of an activation (not of a constant)."""
    return (isinstance(node, Node) and node_op(node) == "quantized_decomposed.dequantize_per_tensor.default"
            and node.args[5] == torch.int8 and node.args[0].op != "get_attr")


def compile_config(exported: torch.export.ExportedProgram) -> EdgeCompileConfig:
    """The ``EdgeCompileConfig`` for ``to_edge_transform_and_lower(exported, ...)`` that lets an ATen
    op outside the core opset through (``aten.cummax`` has no decomposition, so ExecuTorch's
    verifier refuses the whole model): such an op has no NPU lowering, so it stays on the CPU and
    the rest of the model still lowers. Every other setting is ExecuTorch's default."""
    non_core = sorted({n.target for n in exported.graph.nodes
                       if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
                       and n.target.namespace == "aten" and torch.Tag.core not in n.target.tags},
                      key=str)
    return EdgeCompileConfig(_core_aten_ops_exception_list=non_core)
