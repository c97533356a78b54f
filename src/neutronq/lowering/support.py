"""Which nodes of an edge graph can run on the NPU, and why the others stay on the CPU.

A compute node is supported when it has a TFLite lowering, is within its NPU limits
(``lowering.ops``: each op's ``LIMITS``), is not excluded by ``operators_not_to_delegate``, and lives in int8: each
activation input is a dequantized int8 tensor (or the float output of another supported node
of the same quantized unit, e.g. a linear decomposed into view + addmm + view), and its output
reaches a quantize (or another supported node). Quantize / dequantize / constant nodes go with
the compute nodes they serve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.fx import Node

from neutronq.fx import node_op, op_name, tensor_val
from neutronq.lowering.edge import fused_activation, int8_activation_dq, is_dq, is_q, is_weight_path, output_qparams
from neutronq.lowering.ops import LOWERINGS, check_limits
from neutronq.quantizer.rules import CPU_ONLY_RULES, RULES

__all__ = ["OpName", "parse_op_name", "SupportDecision", "decide_support", "node_reason", "will_delegate_alone"]

_WEIGHTED = ("aten.convolution.default", "aten.addmm.default", "aten.mm.default", "aten.linear.default")
# ops the quantizer quantizes for the CPU on purpose (quantizer.rules.CPU_ONLY_RULES): their reason
_CPU_ONLY_REASONS = {str(t): CPU_ONLY_RULES[r.name] for r in RULES if r.name in CPU_ONLY_RULES for t in r.targets}



# The edge dialect renames ops: the names a user knows -> the edge op that carries them.
_SOURCE_NAMES = {
    "aten.convolution.default": ("conv1d", "conv2d", "convolution", "_convolution"),
    "aten.addmm.default": ("linear", "addmm"),
    "aten.mm.default": ("linear", "mm", "matmul"),
    "aten.permute_copy.default": ("permute", "t", "transpose"),
    "aten.max_pool2d_with_indices.default": ("max_pool2d",),
    "aten._softmax.default": ("softmax",),
    "aten.constant_pad_nd.default": ("pad",),
    "aten.view_copy.default": ("view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze"),
    "aten.slice_copy.Tensor": ("slice",),
    "aten._adaptive_avg_pool2d.default": ("adaptive_avg_pool2d",),
    "aten.hardtanh.default": ("hardtanh", "hardtanh_", "relu6"),
    "aten.relu.default": ("relu", "relu_"),
    "aten.tanh.default": ("tanh", "tanh_"),
    "dim_order_ops._clone_dim_order.default": ("clone", "dropout"),
    "aten.clone.default": ("clone", "dropout"),
}


@dataclass(frozen=True)
class OpName:
    """An op name from ``operators_not_to_delegate``: namespace, op, optional overload."""

    namespace: str
    op: str
    overload: Optional[str]
    text: str


def parse_op_name(text: str) -> OpName:
    """``"aten.conv2d.default"``, ``"aten.conv2d"`` or ``"aten::conv2d"`` (``"aten::conv2d.default"``)."""
    t = text.strip()
    m = re.fullmatch(r"(\w+)::(\w+)(?:\.(\w+))?", t) or re.fullmatch(r"(\w+)\.(\w+)(?:\.(\w+))?", t)
    if not m:
        raise ValueError(
            f"operators_not_to_delegate: cannot read op name {text!r}. Write it as "
            "'aten.conv2d.default' (namespace.op.overload) or 'aten::conv2d' (namespace::op)."
        )
    return OpName(m.group(1), m.group(2), m.group(3), t)


def _names_of(node: Node) -> set[tuple[str, str, Optional[str]]]:
    """(namespace, op, overload) names that ``node`` answers to."""
    edge = node_op(node)
    ns, op, overload = (edge.split(".") + [None, None])[:3]
    names = {(ns, op, overload)}
    for alias in _SOURCE_NAMES.get(edge, ()):
        if edge == "aten.convolution.default" and alias in ("conv1d", "conv2d"):
            rank = len(tensor_val(node.args[0]).shape)
            if alias != ("conv1d" if rank == 3 else "conv2d"):
                continue
        names.add(("aten", alias, None))
    orig = node.meta.get("original_aten")
    if orig is not None:
        parts = (op_name(orig).split(".") + [None, None])[:3]
        names.add(tuple(parts))
    return names


def excluded_by(node: Node, excluded: list[OpName]) -> Optional[OpName]:
    names = _names_of(node)
    for ex in excluded:
        for ns, op, overload in names:
            if ns == ex.namespace and op == ex.op and (ex.overload is None or overload in (None, ex.overload)):
                return ex
    return None


@dataclass
class SupportDecision:
    supported: set = field(default_factory=set)  # nodes that may be delegated
    reasons: dict = field(default_factory=dict)  # node -> why it stays on the CPU
    unenforced: list = field(default_factory=list)  # limits not enforced (unknown numbers)
    quantized: bool = False  # the graph holds any quantize / dequantize at all


def _tensor_args(node: Node) -> list[Node]:
    out = []
    for a in node.args:
        for x in (a if isinstance(a, (list, tuple)) else [a]):
            if isinstance(x, Node) and tensor_val(x) is not None:
                out.append(x)
    return out


def _is_glue(node: Node, ep) -> bool:
    return is_q(node) or is_dq(node) or is_weight_path(node, ep) or node_op(node) == "getitem"


def _no_lowering(n: Node) -> str:
    """The reason of an op with no lowering, naming the PyTorch op it was decomposed from (an
    ``F.pad(mode="replicate")`` reaches the edge dialect as arange / clamp / index.Tensor)."""
    reason = f"no NPU lowering for {node_op(n)}"
    orig = n.meta.get("original_aten")
    if orig is not None and op_name(orig) != node_op(n):
        reason += f" (from {op_name(orig)})"
    why = _CPU_ONLY_REASONS.get(node_op(n))
    return reason + (f": {why}" if why else "")


def _computed_item(node: Node, ep) -> bool:
    """A ``getitem`` taking a float tensor out of a compute op (not of glue)."""
    return (node_op(node) == "getitem" and isinstance(node.args[0], Node) and not _is_glue(node.args[0], ep)
            and tensor_val(node) is not None and tensor_val(node).is_floating_point())


def _outputs_quantized(n: Node) -> bool:
    """A multi-output op (split) whose float outputs (``getitem``\ s) are each quantized to int8."""
    items = [u for u in n.users if node_op(u) == "getitem"]
    return (isinstance(n.meta.get("val"), (tuple, list)) and len(items) == len(n.users) and bool(items)
            and all(output_qparams(u) is not None for u in items
                    if tensor_val(u) is not None and tensor_val(u).is_floating_point()))


def node_reason(n: Node, ep, spec, excluded: list[OpName], unenforced: Optional[list] = None) -> Optional[str]:
    """Why the compute node ``n`` alone cannot run on the NPU (None: it can): no lowering, excluded
    by the user, an input or the output not int8, or outside the op's NPU limits. Whether its
    neighbours run there too is ``decide_support``'s concern."""
    name = node_op(n)
    if name not in LOWERINGS:
        return _no_lowering(n)
    if (ex := excluded_by(n, excluded)) is not None:
        return f"excluded by operators_not_to_delegate ({ex.text!r})"
    for a in _tensor_args(n):
        if is_weight_path(a, ep) and name in _WEIGHTED:
            continue
        if int8_activation_dq(a) or (not _is_glue(a, ep) and tensor_val(a).is_floating_point()):
            continue
        if _computed_item(a, ep):  # a float output of a multi-output op (pool values, split)
            continue
        return f"input {a.name} is not an int8 tensor (it is not quantized)"
    if output_qparams(n) is None and not _outputs_quantized(n):
        return "its output is not quantized to int8 (no quantize after it)"
    res = check_limits(n, spec, ep)
    if unenforced is not None:
        unenforced.extend(res.unenforced)
    return res.reason


def will_delegate_alone(n: Node, ep, spec, excluded: list[OpName]) -> bool:
    """Whether a node between dequantize and quantize nodes of its own runs on the NPU whatever
    its neighbours do: its activation inputs are int8 dequantizes used by it alone, its users are
    int8 quantizes, and it passes ``node_reason``. (The partitioner keeps such nodes from
    decomposition: ``NeutronPartitioner.ops_to_not_decompose``.)"""
    for a in _tensor_args(n):
        if is_weight_path(a, ep):
            continue
        if not int8_activation_dq(a) or len(a.users) != 1:
            return False
    if not n.users or not all(is_q(u) and u.args[5] == torch.int8 for u in n.users):
        return False
    return node_reason(n, ep, spec, excluded) is None


def decide_support(ep, spec, excluded: list[OpName]) -> SupportDecision:
    d = SupportDecision()
    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    d.quantized = any(is_q(n) or is_dq(n) for n in nodes)
    cand: set[Node] = set()
    for n in nodes:
        if _is_glue(n, ep):
            continue
        if node_op(n) not in LOWERINGS:
            reason = _no_lowering(n)
        elif (ex := excluded_by(n, excluded)) is not None:
            reason = f"excluded by operators_not_to_delegate ({ex.text!r})"
        elif not d.quantized:
            reason = ("the model is not quantized (no quantize/dequantize nodes): quantize it with "
                      "NeutronQuantizer + convert_pt2e before lowering")
        else:
            reason = node_reason(n, ep, spec, excluded, d.unenforced)
        if reason is None:
            cand.add(n)
        else:
            d.reasons[n] = reason

    # float edges must stay inside the NPU: drop candidates fed by / feeding CPU float values
    changed = True
    while changed:
        changed = False
        for n in list(cand):
            reason = None
            for a in _tensor_args(n):
                if not _is_glue(a, ep) and a not in cand:
                    reason = f"its float input {a.name} is computed on the CPU"
                elif _computed_item(a, ep) and a.args[0] not in cand:
                    reason = f"its float input {a.name} is computed on the CPU"
                elif is_dq(a) and not is_weight_path(a, ep) and any(u not in cand for u in a.users):
                    # the partitioner may not edit the graph (ExecuTorch checks), so a dequantize
                    # shared with a CPU op cannot be split: its users stay together on the CPU
                    reason = f"its input {a.name} is dequantized for an op on the CPU too"
            fused_out = fused_activation(n)[0]
            for u in n.users:
                if is_q(u) or u in cand or u is fused_out:
                    continue
                if node_op(u) == "getitem":
                    if all(is_q(v) or v in cand for v in u.users):
                        continue
                reason = f"its float output feeds {u.name}, which runs on the CPU"
            if reason is not None:
                cand.discard(n)
                d.reasons[n] = reason
                changed = True

    supported = set(cand)
    for n in nodes:
        if n in cand:
            fused_out = fused_activation(n)[0]
            supported.add(fused_out)
            d.reasons.pop(fused_out, None)
    for n in nodes:
        if node_op(n) == "getitem" and n.args[0] in supported:
            supported.add(n)
    for n in nodes:  # weights and dequantize of inputs
        if (is_dq(n) or is_weight_path(n, ep)) and n.users and all(u in supported for u in n.users):
            supported.add(n)
    for n in reversed(nodes):  # weight path: dq(const) -> permute_copy -> addmm
        if is_dq(n) and n.users and all(u in supported for u in n.users):
            supported.add(n)
    for n in nodes:  # a requantization between two NPU ops (q -> dq -> q with other parameters):
        # a QUANTIZE inside the partition (a softmax's fixed output into a matmul's symmetric input)
        if (is_dq(n) and n not in supported and is_q(n.args[0]) and n.args[0].args[0] in supported
                and n.users and all(is_q(u) and u.args[5] == torch.int8 and u.users
                                    and all(v in supported for v in u.users) for u in n.users)):
            supported.add(n)
            supported.update(n.users)
    for n in nodes:
        if is_q(n) and n.args[0] in supported:
            supported.add(n)
    _add_requantizations(nodes, supported)
    for n in nodes:
        if n not in supported and n not in d.reasons:
            d.reasons[n] = _glue_reason(n, ep)
    d.supported = supported
    return d


def _add_requantizations(nodes: list, supported: set) -> None:
    """A requantization between two NPU ops (``q -> dq -> q`` with other parameters, as
    ``convert_pt2e`` leaves it where a consumer needs other parameters than its producer gave,
    e.g. a sigmoid's fixed output feeding a cat) joins their partition as a QUANTIZE op instead of
    splitting it in two."""
    changed = True
    while changed:
        changed = False
        for n in nodes:
            if n in supported or not is_q(n) or not is_dq(n.args[0]):
                continue
            dq = n.args[0]
            if not (is_q(dq.args[0]) and dq.args[0] in supported):
                continue
            if not all(u is n or u in supported for u in dq.users):
                continue
            if not n.users or not all(is_dq(u) and u in supported for u in n.users):
                continue
            supported.update((dq, n))
            changed = True


def _glue_reason(n: Node, ep) -> str:
    if is_q(n):
        src = n.args[0]
        if isinstance(src, Node) and src.op == "placeholder":
            return "quantizes the model's float input: the float/int8 boundary stays on the CPU"
        return f"quantizes the output of {getattr(src, 'name', src)}, which runs on the CPU"
    if is_dq(n):
        users = ", ".join(u.name for u in n.users)
        if any(u.op == "output" for u in n.users):
            return "dequantizes a model output: the int8/float boundary stays on the CPU"
        return f"dequantizes for {users}, which run(s) on the CPU"
    if node_op(n) == "getitem":
        return f"part of {n.args[0].name}, which runs on the CPU"
    if is_weight_path(n, ep):
        return "constant of an op that runs on the CPU"
    return "not delegated"
