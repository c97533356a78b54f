"""Lower quantized tiny models and run the lowered program on the host, delegates in LiteRT."""

from __future__ import annotations

import torch
from executorch.exir import to_edge_transform_and_lower
from executorch.exir.lowered_backend_module import LoweredBackendModule

from helpers import quantize
from neutronq import NeutronPartitioner, generate_neutron_compile_spec
from neutronq.lowering.host_check import run_edge_program
from neutronq.lowering.payload import decode_payload


def lower(quantized, example, strict=False, target="imxrt700", **spec_kwargs):
    """(edge program manager, partitioner) of the seed flow on ``quantized``."""
    partitioner = NeutronPartitioner(compile_spec=generate_neutron_compile_spec(target, **spec_kwargs))
    edge = to_edge_transform_and_lower(torch.export.export(quantized, example, strict=strict),
                                       partitioner=[partitioner])
    return edge, partitioner


def quantize_and_lower(model, example, strict=False, calibration=None, quantizer_kwargs=None, **spec_kwargs):
    _, converted, calibration = quantize(model, example, strict=strict, calibration=calibration,
                                         **(quantizer_kwargs or {}))
    edge, partitioner = lower(converted, example, strict, **spec_kwargs)
    return converted, edge, partitioner, calibration


def delegates(edge) -> list[LoweredBackendModule]:
    gm = edge.exported_program().graph_module
    return [m for _, m in gm.named_children() if isinstance(m, LoweredBackendModule)]


def payloads(edge):
    return [decode_payload(m.processed_bytes) for m in delegates(edge)]


def run_lowered(edge, inputs: tuple):
    """Run the lowered edge program: delegates through ``run_payload``, the rest eagerly."""
    return run_edge_program(edge, inputs)
