"""Where each op of a lowered program runs (NPU delegate or CPU), why, and the MACs on each.

Reads the ``EdgeProgramManager`` that ``to_edge_transform_and_lower`` returns: ops inside a
delegate's lowered module run on the NPU; every other op of the top-level graph runs on the CPU,
with the reason the partitioner recorded for it (or a generic one when it recorded none).
MACs count multiply-accumulates of convolutions and matrix products from the tensor shapes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional

from torch.fx import GraphModule, Node

from neutronq.backend import NEUTRON_BACKEND_ID
from neutronq.fx import op_name
from neutronq.lowering.macs import macs as node_macs  # re-exported: one MAC count for all

__all__ = ["OpPlacement", "Placement", "node_macs", "op_placement", "graph_macs"]

_QDQ = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel")
_BOOKKEEPING = ("getitem", "executorch_call_delegate", "_guards_fn", "sym_size", "alloc",
                "_assert_tensor_metadata")


@dataclass(frozen=True)
class OpPlacement:
    node: str
    op: str  # e.g. "aten.convolution.default"
    where: str  # "NPU" or "CPU"
    macs: int
    partition: Optional[int] = None  # delegate index for NPU ops
    reason: str = ""  # why a CPU op is not on the NPU


@dataclass
class Placement:
    ops: list[OpPlacement] = field(default_factory=list)
    partitions: int = 0

    @property
    def npu_macs(self) -> int:
        return sum(o.macs for o in self.ops if o.where == "NPU")

    @property
    def total_macs(self) -> int:
        return sum(o.macs for o in self.ops)

    @property
    def npu_mac_fraction(self) -> float:
        return self.npu_macs / self.total_macs if self.total_macs else 0.0

    def counts(self) -> dict[str, dict[str, int]]:
        """{'NPU': {op: count}, 'CPU': {op: count}}."""
        out: dict[str, Counter] = {"NPU": Counter(), "CPU": Counter()}
        for o in self.ops:
            out[o.where][o.op] += 1
        return {k: dict(sorted(v.items())) for k, v in out.items()}

    def cpu_ops(self) -> list[OpPlacement]:
        return [o for o in self.ops if o.where == "CPU"]

    def as_dict(self) -> dict:
        return {
            "partitions": self.partitions,
            "npu_macs": self.npu_macs,
            "total_macs": self.total_macs,
            "npu_mac_fraction": self.npu_mac_fraction,
            "counts": self.counts(),
            "ops": [asdict(o) for o in self.ops],
        }


def graph_macs(graph_module: GraphModule) -> int:
    return sum(node_macs(n) for n in graph_module.graph.nodes)


def _is_bookkeeping(name: str) -> bool:
    return any(b in name for b in _BOOKKEEPING)


def _generic_reason(node: Node, name: str) -> str:
    if any(q in name for q in _QDQ):
        return "quantize/dequantize at the edge of the int8 graph (the model's float interface stays on the CPU)"
    users_quantized = any(any(q in op_name(u.target) for q in _QDQ) for u in node.users
                          if u.op == "call_function")
    inputs_quantized = any(any(q in op_name(i.target) for q in _QDQ) for i in node.all_input_nodes
                           if i.op == "call_function")
    if not users_quantized and not inputs_quantized:
        return "not quantized (float op: no quantization rule covers it)"
    return "not delegated by the partitioner (no reason recorded)"


def op_placement(edge_manager, reasons: Optional[Mapping[str, str]] = None) -> Placement:
    """Placement of every op of a lowered ``EdgeProgramManager`` (or its ``ExportedProgram``)."""
    program = edge_manager.exported_program() if hasattr(edge_manager, "exported_program") else edge_manager
    gm = program.graph_module
    reasons = dict(reasons or {})
    placement = Placement()
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = op_name(node.target)
        if "executorch_call_delegate" in name:
            lowered = getattr(gm, node.args[0].target)
            index = placement.partitions
            placement.partitions += 1
            backend = getattr(lowered, "backend_id", "?")
            inner = lowered.original_module.graph_module
            for sub in inner.graph.nodes:
                if sub.op != "call_function":
                    continue
                sub_name = op_name(sub.target)
                if _is_bookkeeping(sub_name) or any(q in sub_name for q in _QDQ):
                    continue
                where = "NPU" if backend == NEUTRON_BACKEND_ID else f"delegate:{backend}"
                placement.ops.append(OpPlacement(sub.name, sub_name, where, node_macs(sub), index))
            continue
        if _is_bookkeeping(name):
            continue
        reason = reasons.get(node.name) or _generic_reason(node, name)
        placement.ops.append(OpPlacement(node.name, name, "CPU", node_macs(node), None, reason))
    return placement

