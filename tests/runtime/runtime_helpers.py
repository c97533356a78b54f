"""Lowering in one line for the runtime tests, and the comparisons they assert."""

from __future__ import annotations

import torch

from helpers import Q, quantize
from neutronq.metrics import within_one_step


def lower(quantized, example: tuple, partitioner=None):
    """``to_edge_transform_and_lower`` of a ``convert_pt2e`` model, as the seeds call it."""
    import executorch.kernels.quantized  # noqa: F401  (quantized out variants for to_executorch)
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(quantized, example)
    if partitioner is None:
        return to_edge_transform_and_lower(exported)
    return to_edge_transform_and_lower(exported, partitioner=[partitioner])


def neutron_partitioner():
    from neutronq.neutron_partitioner import NeutronPartitioner
    from neutronq.nxp_backend import generate_neutron_compile_spec

    return NeutronPartitioner(generate_neutron_compile_spec("imxrt700"))


def quantize_and_lower(model, example, calibration=None, partitioner="neutron"):
    """(converted model, calibration set, EdgeProgramManager) of a float model."""
    _, converted, calibration = quantize(model, example, calibration=calibration)
    part = neutron_partitioner() if partitioner == "neutron" else partitioner
    return converted, calibration, lower(converted, example, part)


def output_scales(converted) -> list[float]:
    """The scale of the dequantize that makes each output (None for a float output)."""
    out = next(n for n in converted.graph.nodes if n.op == "output")
    scales = []
    for arg in torch.utils._pytree.tree_leaves(out.args[0]):
        is_dq = getattr(arg, "target", None) == Q.dequantize_per_tensor.default
        scales.append(float(arg.args[1]) if is_dq else None)
    return scales


fraction_within_one_step = within_one_step  # the project's own measure (neutronq.metrics)


def delegate_count(edge) -> int:
    from executorch.exir.delegate import executorch_call_delegate

    gm = edge.exported_program().graph_module
    return sum(1 for n in gm.graph.nodes if n.op == "call_function" and n.target is executorch_call_delegate)
