"""Shared test helpers: export + quantize tiny models in one line."""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec

Q = torch.ops.quantized_decomposed


def export(model: torch.nn.Module, example: tuple, strict: bool = False):
    return torch.export.export(model.eval(), example, strict=strict)


def calibration_set(example: tuple, count: int = 8, seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    return [tuple(torch.randn(t.shape, generator=g) for t in example) for _ in range(count)]


def quantize(model: torch.nn.Module, example: tuple, strict: bool = False,
             calibration: Optional[Iterable[tuple]] = None, **quantizer_kwargs):
    """Export, prepare_pt2e with NeutronQuantizer, calibrate, convert_pt2e.

    Returns (prepared model, converted model, calibration set)."""
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), **quantizer_kwargs)
    gm = export(model, example, strict).module()
    prepared = prepare_pt2e(gm, quantizer)
    calibration = list(calibration) if calibration is not None else calibration_set(example)
    with torch.no_grad():
        for inputs in calibration:
            prepared(*inputs)
    return prepared, convert_pt2e(prepared), calibration


def nodes(gm, target) -> list:
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target == target]


def is_q(n) -> bool:
    return n.op == "call_function" and n.target in (
        Q.quantize_per_tensor.default, Q.quantize_per_channel.default)


def is_dq(n) -> bool:
    return n.op == "call_function" and n.target in (
        Q.dequantize_per_tensor.default, Q.dequantize_per_channel.default)


def dq_params(n):
    """(scale, zero_point, qmin, qmax, dtype) of a per-tensor dequantize node."""
    assert n.target == Q.dequantize_per_tensor.default, n.format_node()
    return tuple(n.args[1:6])


def q_params(n):
    assert n.target == Q.quantize_per_tensor.default, n.format_node()
    return tuple(n.args[1:6])
