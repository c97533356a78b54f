"""``NeutronPartitioner``: tags the quantized, NPU-supported subgraphs of an edge program for
the Neutron backend, and records why everything else stays on the CPU.

    compile_spec = generate_neutron_compile_spec("imxrt700")
    partitioner = NeutronPartitioner(compile_spec=compile_spec)
    program = to_edge_transform_and_lower(torch.export.export(quantized_model, sample_inputs),
                                          partitioner=[partitioner]).to_executorch()
    partitioner.cpu_ops          # [CpuOp(node, op, reason), ...] for every op left on the CPU
    partitioner.report           # PartitionReport: partitions, MACs on the NPU, unenforced limits,
                                 # seconds (the time partition() took)

A partition holds dequantize -> NPU ops -> quantize: only int8 tensors cross its edges, so the
model's own input quantize and output dequantize stay on the CPU. ExecuTorch forbids a
partitioner to edit the graph, so a dequantize shared by an NPU op and a CPU op keeps all its
users on the CPU (``convert_pt2e`` already gives each user its own dequantize, so this is rare). Partitions
made only of data movement (view, permute, clone, a one-input cat ...) are not delegated.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import executorch.kernels.quantized  # noqa: F401  out variants of the quantize/dequantize left on the CPU
import torch
from executorch.exir.backend.partitioner import DelegationSpec, Partitioner, PartitionResult
from executorch.exir.backend.utils import tag_constant_data
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase

from neutronq.backend import NEUTRON_BACKEND_ID
from neutronq.backend.neutron_target_spec import NeutronTargetSpec
from neutronq.fx import node_op, tensor_val
from neutronq.lowering.edge import DATA_MOVEMENT, is_constant_placeholder, is_dq, is_q, is_weight_path
from neutronq.lowering.macs import macs
from neutronq.lowering.ops import PRESERVED
from neutronq.lowering.support import decide_support, parse_op_name, will_delegate_alone
from neutronq.nxp_backend import NeutronCompileOptions

__all__ = ["NeutronPartitioner", "CpuOp", "PartitionReport", "NothingDelegatedWarning", "CPU_REASON_KEY"]

log = logging.getLogger(__name__)
CPU_REASON_KEY = "neutron_cpu_reason"


class NothingDelegatedWarning(UserWarning):
    """The partitioner found nothing to delegate to the NPU."""


@dataclass(frozen=True)
class CpuOp:
    """An op left on the CPU and the reason."""

    node: str
    op: str
    reason: str


@dataclass
class PartitionReport:
    target: str
    partitions: dict = field(default_factory=dict)  # tag -> [node names]
    cpu_ops: list = field(default_factory=list)  # [CpuOp]
    macs_npu: int = 0
    macs_total: int = 0
    unenforced_limits: list = field(default_factory=list)
    seconds: float = 0.0  # wall time of the partition() call that made this report

    @property
    def npu_mac_fraction(self) -> float:
        return self.macs_npu / self.macs_total if self.macs_total else 0.0


class _Supported(OperatorSupportBase):
    def __init__(self, nodes: set):
        super().__init__()
        self.nodes = nodes

    def is_node_supported(self, submodules, node) -> bool:
        return node in self.nodes


def _is_data_movement_only(nodes, ep) -> bool:
    for n in nodes:
        if is_q(n) or is_dq(n) or is_weight_path(n, ep) or node_op(n) == "getitem":
            continue
        name = node_op(n)
        if name == "aten.cat.default" and len(n.args[0]) > 1:
            return False
        if name not in DATA_MOVEMENT:
            return False
    return True


def _float_crossings(nodes: set, ep) -> dict:
    """The nodes of a proposed partition at which a float tensor would enter or leave it, with
    the reason (a delegate takes and gives int8 tensors only)."""
    found = {}
    for n in nodes:
        for a in n.all_input_nodes:
            if a in nodes or is_constant_placeholder(a, ep):
                continue
            val = tensor_val(a)
            if val is not None and val.dtype != torch.int8:
                found.setdefault(n, f"the float tensor {a.name} would enter the partition at {n.name}")
        for u in n.users:
            val = tensor_val(n)
            if u not in nodes and val is not None and val.dtype != torch.int8:
                found.setdefault(n, f"the float tensor {n.name} would leave the partition to {u.name}")
    return found


class NeutronPartitioner(Partitioner):
    """Delegates int8 subgraphs that the Neutron NPU supports (see the module doc)."""

    def __init__(self, compile_spec, *, neutron_target_spec: Optional[NeutronTargetSpec] = None):
        super().__init__()
        self.compile_spec = list(compile_spec)
        self.options = NeutronCompileOptions.from_compile_specs(self.compile_spec)
        self.target_spec = neutron_target_spec or NeutronTargetSpec(
            self.options.target, self.options.neutron_converter_flavor)
        self.excluded = [parse_op_name(o) for o in self.options.operators_not_to_delegate]
        self.delegation_spec = DelegationSpec(NEUTRON_BACKEND_ID, self.compile_spec)
        self.report = PartitionReport(self.options.target)

    @property
    def cpu_ops(self) -> list:
        return self.report.cpu_ops

    def ops_to_not_decompose(self, ep) -> tuple[list, Callable]:
        """The ATen ops that the NPU runs whole (``OpLowering.preserve``: hardswish rather than
        its add, clamp, mul and div), and the filter that keeps exactly the nodes this partitioner
        will delegate: ExecuTorch requires every kept node to be delegated, the others decompose
        as usual."""
        ops = []
        for name in PRESERVED:
            namespace, op, overload = name.split(".")
            ops.append(getattr(getattr(getattr(torch.ops, namespace), op), overload))

        def keep(node) -> bool:
            return (node.op == "call_function" and node_op(node) in PRESERVED
                    and will_delegate_alone(node, ep, self.target_spec, self.excluded))

        return ops, keep

    def partition(self, exported_program) -> PartitionResult:
        start = time.perf_counter()
        ep = exported_program
        gm = ep.graph_module
        decision = decide_support(ep, self.target_spec, self.excluded)
        reasons = dict(decision.reasons)
        supported = set(decision.supported)
        # The capability partitioner may cut a float edge between supported nodes (to avoid a
        # cycle through the CPU, e.g. an attention's v split off the q / k partition): such a
        # node leaves the NPU with its reason and the partitions are proposed again, so the rest
        # of the partition stays delegated (and every node kept from decomposition with it).
        for _ in range(len(gm.graph.nodes)):
            proposed = CapabilityBasedPartitioner(
                gm, _Supported(supported), allows_single_node_partition=True
            ).propose_partitions()
            crossings = {}
            for part in proposed:
                crossings.update(_float_crossings(set(part.nodes), ep))
            if not crossings:
                break
            for n, why in crossings.items():
                supported.discard(n)
                reasons[n] = why

        tags: dict = {}
        delegated: set = set()
        for part in proposed:
            nodes = set(part.nodes)
            if _is_data_movement_only(nodes, ep):
                for n in nodes:
                    reasons[n] = "its partition holds only data movement, which would do nothing on the NPU"
                continue
            tag = f"neutron_{len(tags)}"
            for n in nodes:
                n.meta["delegation_tag"] = tag
            delegated |= nodes
            tags[tag] = self.delegation_spec
        tag_constant_data(ep)

        report = PartitionReport(self.options.target, unenforced_limits=list(decision.unenforced))
        for tag in tags:
            report.partitions[tag] = [n.name for n in gm.graph.nodes if n.meta.get("delegation_tag") == tag]
        for n in gm.graph.nodes:
            if n.op != "call_function":
                continue
            m = macs(n)
            report.macs_total += m
            if n in delegated:
                report.macs_npu += m
                n.meta.pop(CPU_REASON_KEY, None)
            else:
                reason = reasons.get(n, "not delegated")
                n.meta[CPU_REASON_KEY] = reason
                report.cpu_ops.append(CpuOp(n.name, node_op(n), reason))
        report.seconds = time.perf_counter() - start
        self.report = report
        if not tags:
            self._explain_nothing_delegated(decision)
        return PartitionResult(tagged_exported_program=ep, partition_tags=tags)

    def _explain_nothing_delegated(self, decision) -> None:
        if not decision.quantized:
            msg = ("NeutronPartitioner delegated nothing: the model is not quantized (no "
                   "quantize/dequantize nodes). Quantize it with NeutronQuantizer, prepare_pt2e, "
                   "calibration and convert_pt2e, then export and lower the converted model.")
        else:
            counts: dict = {}
            for op in self.report.cpu_ops:
                counts[op.reason] = counts.get(op.reason, 0) + 1
            top = "; ".join(f"{r} ({c}x)" for r, c in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
            msg = f"NeutronPartitioner delegated nothing to the NPU. Most common reasons: {top}."
        log.warning(msg)
        warnings.warn(msg, NothingDelegatedWarning, stacklevel=3)
