"""Small facts about ``torch.fx`` graphs that every layer shares: op names, tensor values and
shapes, node arguments, and reading / replacing the constants a ``GraphModule`` holds.

One definition each, so the quantizer, the graph passes, the PTQ steps, the lowering and the
reports name ops and read shapes the same way.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Optional, Union

import torch
from torch.fx import GraphModule, Node

__all__ = [
    "op_name",
    "short_op_name",
    "node_op",
    "layer_name",
    "tensor_val",
    "tensor_shape",
    "is_float_tensor",
    "arg",
    "single_user",
    "hardtanh_range",
    "clamp_range",
    "get_attr_value",
    "set_attr_value",
    "register_constant",
    "free_attr_name",
]


# ------------------------------------------------------------------------------------------
# names
# ------------------------------------------------------------------------------------------
def op_name(target) -> str:
    """The op's qualified name: ``"aten.conv2d.default"`` for an ATen op,
    ``"aten.convolution.default"`` for an edge-dialect op, ``"getitem"`` for ``operator.getitem``,
    the function's name otherwise."""
    if target is operator.getitem:
        return "getitem"
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    name = getattr(target, "__name__", None)
    if isinstance(name, str) and "." in name:  # EdgeOpOverload: "aten.convolution.default"
        return name
    return name if isinstance(name, str) else str(target)


def short_op_name(target) -> str:
    """The op without namespace and overload: ``"conv2d"`` for ``aten.conv2d.default``."""
    parts = op_name(target).split(".")
    return parts[1] if len(parts) == 3 else parts[0]


def node_op(node: Node) -> str:
    """``op_name`` of a ``call_function`` node; the node's kind (``"placeholder"`` ...) otherwise."""
    return op_name(node.target) if node.op == "call_function" else node.op


def layer_name(node: Node) -> str:
    """The node's name and the module it belongs to, for messages: ``"conv2d_3 (features.3.conv)"``."""
    stack = node.meta.get("nn_module_stack") or {}
    path = str(list(stack.values())[-1][0]) if stack else ""
    path = path.replace("L['self'].", "").replace("L__self___", "")
    return f"{node.name} ({path})" if path else node.name


# ------------------------------------------------------------------------------------------
# values and shapes
# ------------------------------------------------------------------------------------------
def tensor_val(node) -> Optional[torch.Tensor]:
    """The (fake) tensor a node computes, from its ``meta["val"]``; the first of a tuple."""
    val = node.meta.get("val") if isinstance(node, Node) else None
    if isinstance(val, (tuple, list)):
        val = val[0] if val and isinstance(val[0], torch.Tensor) else None
    return val if isinstance(val, torch.Tensor) else None


def tensor_shape(node) -> Optional[tuple[int, ...]]:
    """The static shape of the tensor a node computes, or None."""
    val = tensor_val(node)
    if val is None:
        return None
    try:
        return tuple(int(d) for d in val.shape)
    except (TypeError, ValueError):  # a symbolic size
        return None


def is_float_tensor(node) -> bool:
    val = node.meta.get("val") if isinstance(node, Node) else None
    return isinstance(val, torch.Tensor) and val.dtype.is_floating_point


def arg(node: Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` of a call (or keyword ``name``), ``default`` when absent."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def single_user(node: Node) -> Optional[Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def hardtanh_range(node: Node) -> tuple[float, float]:
    """(min_val, max_val) of a ``hardtanh`` call (torch's defaults -1, 1); ``relu6`` is (0, 6)."""
    if op_name(node.target).split(".")[1:2] in (["relu6"], ["relu6_"]):
        return 0.0, 6.0
    return float(arg(node, 1, "min_val", -1.0)), float(arg(node, 2, "max_val", 1.0))


def clamp_range(node: Node) -> tuple[float, float]:
    """(low, high) of a ``clamp`` / ``clip`` call with scalar bounds (a missing bound is -inf /
    inf), or of a ``hardtanh`` / ``relu6``."""
    if op_name(node.target).split(".")[1] in ("hardtanh", "hardtanh_", "relu6", "relu6_"):
        return hardtanh_range(node)
    lo, hi = arg(node, 1, "min"), arg(node, 2, "max")
    return (-math.inf if lo is None else float(lo)), (math.inf if hi is None else float(hi))


# ------------------------------------------------------------------------------------------
# constants of a GraphModule
# ------------------------------------------------------------------------------------------
def _target(node_or_target: Union[Node, str]) -> Optional[str]:
    if isinstance(node_or_target, Node):
        return str(node_or_target.target) if node_or_target.op == "get_attr" else None
    return node_or_target


def get_attr_value(gm: GraphModule, node_or_target: Union[Node, str, None]) -> Optional[torch.Tensor]:
    """The tensor behind a ``get_attr`` node (or an attribute path such as ``"conv.weight"``);
    None when it is not a ``get_attr`` of a tensor."""
    target = _target(node_or_target) if node_or_target is not None else None
    if target is None:
        return None
    try:
        value = operator.attrgetter(target)(gm)
    except AttributeError:
        return None
    return value if isinstance(value, torch.Tensor) else None


def set_attr_value(gm: GraphModule, node_or_target: Union[Node, str], value: torch.Tensor,
                   requires_grad: Optional[bool] = None) -> None:
    """Replace the tensor at a ``get_attr`` target with a copy of ``value``. Never an in-place
    change: the old tensor may be the user's own model parameter. A parameter stays a parameter
    (``requires_grad``: the old one's unless given), a buffer a buffer."""
    target = _target(node_or_target)
    if target is None:
        raise ValueError(f"{node_or_target} is not a get_attr node")
    *path, name = target.split(".")
    owner = gm
    for part in path:
        owner = getattr(owner, part)
    value = value.detach().clone()
    if name in owner._parameters:
        old = owner._parameters[name]
        if requires_grad is None:
            requires_grad = bool(old is not None and old.requires_grad)
        owner._parameters[name] = torch.nn.Parameter(value, requires_grad=requires_grad)
    elif name in owner._buffers:
        owner._buffers[name] = value
    else:
        setattr(owner, name, value)


def free_attr_name(gm: GraphModule, base: str) -> str:
    """``base`` (dots replaced) or ``base_1``, ``base_2`` ...: the first name ``gm`` does not have."""
    base = base.replace(".", "_")
    name, index = base, 0
    while hasattr(gm, name):
        index += 1
        name = f"{base}_{index}"
    return name


def register_constant(gm: GraphModule, name: str, value: torch.Tensor, before: Node) -> Node:
    """A new buffer on ``gm`` holding a copy of ``value`` and the ``get_attr`` node that reads it,
    placed before ``before``; the buffer's name is ``name`` made unique."""
    name = free_attr_name(gm, name)
    gm.register_buffer(name, value.detach().clone())
    with gm.graph.inserting_before(before):
        node = gm.graph.get_attr(name)
    node.meta["val"] = value.detach().clone()
    return node

