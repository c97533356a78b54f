"""The tests' one pipeline: quantize a float model with NeutronQuantizer, lower it with
NeutronPartitioner as the seeds do, and run the lowered program on the host (``neutronq.runtime``,
the one interpreter of lowered programs), in one line each."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.utils._pytree as pytree
from executorch.exir import to_edge_transform_and_lower
from executorch.exir.delegate import executorch_call_delegate
from executorch.exir.lowered_backend_module import LoweredBackendModule
from helpers import Q, quantize

from neutronq.lowering.edge import compile_config
from neutronq.lowering.payload import decode_payload
from neutronq.metrics import within_one_step
from neutronq.neutron_partitioner import NeutronPartitioner
from neutronq.nxp_backend import generate_neutron_compile_spec
from neutronq.runtime import run_on_host


class Lowered(NamedTuple):
    converted: torch.fx.GraphModule  # the convert_pt2e model
    edge: object  # the EdgeProgramManager of to_edge_transform_and_lower
    partitioner: Optional[NeutronPartitioner]
    calibration: list  # the calibration inputs


def lower(converted, example: tuple, strict: bool = False, partitioner: bool = True, target: str = "imxrt700",
          **spec_kwargs):
    """(edge program manager, partitioner) of the seed flow on ``converted``; ``partitioner=False``
    lowers with no partitioner (everything on the CPU)."""
    import executorch.kernels.quantized  # noqa: F401  (quantized out variants for to_executorch)

    exported = torch.export.export(converted, example, strict=strict)
    config = compile_config(exported)  # an ATen op outside the core opset stays on the CPU
    if not partitioner:
        return to_edge_transform_and_lower(exported, compile_config=config), None
    part = NeutronPartitioner(compile_spec=generate_neutron_compile_spec(target, **spec_kwargs))
    return to_edge_transform_and_lower(exported, partitioner=[part], compile_config=config), part


def quantize_and_lower(model, example: tuple, strict: bool = False, calibration=None,
                       quantizer_kwargs: Optional[dict] = None, **spec_kwargs) -> Lowered:
    """Export, quantize (PTQ, calibrated on ``calibration`` or 8 normal draws) and lower."""
    _, converted, calibration = quantize(model, example, strict=strict, calibration=calibration,
                                         **(quantizer_kwargs or {}))
    edge, partitioner = lower(converted, example, strict, **spec_kwargs)
    return Lowered(converted, edge, partitioner, calibration)


def run_lowered(edge, inputs: tuple) -> tuple:
    """The lowered program's outputs, flattened to a tuple (``neutronq.run_on_host``)."""
    return tuple(pytree.tree_leaves(run_on_host(edge, *inputs)))


def delegates(edge) -> list[LoweredBackendModule]:
    gm = edge.exported_program().graph_module
    return [m for _, m in gm.named_children() if isinstance(m, LoweredBackendModule)]


def delegate_count(edge) -> int:
    gm = edge.exported_program().graph_module
    return sum(1 for n in gm.graph.nodes if n.op == "call_function" and n.target is executorch_call_delegate)


def payloads(edge):
    return [decode_payload(m.processed_bytes) for m in delegates(edge)]


def output_scales(converted) -> list:
    """The scale of the dequantize that makes each output (None for a float output)."""
    out = next(n for n in converted.graph.nodes if n.op == "output")
    scales = []
    for arg in pytree.tree_leaves(out.args[0]):
        is_dq = getattr(arg, "target", None) == Q.dequantize_per_tensor.default
        scales.append(float(arg.args[1]) if is_dq else None)
    return scales


fraction_within_one_step = within_one_step  # the project's own measure (neutronq.metrics)
