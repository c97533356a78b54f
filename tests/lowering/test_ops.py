"""One test per supported op, both export modes: quantize a tiny model, lower it, run the
lowered program on the host (``neutronq.run_on_host``: the payload's TFLite in LiteRT's reference
kernels) and compare with the ``convert_pt2e`` model; in the non-strict mode also check that the
program emulated by ``neutronq.emulate`` gives LiteRT's outputs bit for bit (one lowering per case
serves both).

Adding an op is one entry in ``op_cases.CASES``: the model, its input shapes, the registrations
it must put on the NPU; inputs and calibration data are standard normal times the case's scale.
"""

from __future__ import annotations

import pytest
import torch
from emulate_helpers import check_emulated_identical_to_litert
from helpers import calibration_set
from pipelines import delegates, payloads, quantize_and_lower, run_lowered

from neutronq.fx import node_op
from neutronq.lowering.ops import OP_BY_EDGE
from neutronq.lowering.rounding_audit import audit_payload
from neutronq.runtime import recording_delegate_calls
from op_cases import CASES

torch.manual_seed(0)


def _inputs_in_calibration_range(calibration, count: int, seed: int = 1):
    """Fresh inputs, uniform within each input's calibrated [min, max]."""
    g = torch.Generator().manual_seed(seed)
    stacked = [torch.stack([c[i] for c in calibration]) for i in range(len(calibration[0]))]
    lo = [s.min() for s in stacked]
    hi = [s.max() for s in stacked]
    return [tuple(l + (h - l) * torch.rand(s.shape[1:], generator=g) for s, l, h in zip(stacked, lo, hi))
            for _ in range(count)]


def _out_qparams(edge):
    """(scale, zero point) of each model output's final dequantize: one int8 step and its zero."""
    ep = edge.exported_program()
    out = next(n for n in ep.graph.nodes if n.op == "output")
    return [(float(n.args[1]), int(n.args[2])) for n in out.args[0]]


def check_against_pt2e(converted, edge, calibration, count: int = 8):
    """(fraction of outputs within one step of convert_pt2e's, convert_pt2e's int8 outputs, the
    delegate calls made)."""
    qparams = _out_qparams(edge)
    within, total = 0, 0
    int8_outputs = []
    with recording_delegate_calls(edge) as calls:
        for inputs in _inputs_in_calibration_range(calibration, count):
            ref = converted(*inputs)
            got = run_lowered(edge, inputs)
            ref = ref if isinstance(ref, (tuple, list)) else (ref,)
            for r, o, (s, zp) in zip(ref, got, qparams):
                diff = (r - o).abs()
                within += int((diff <= s * 1.001).sum())
                total += diff.numel()
                int8_outputs.append(torch.round(r / s) + zp)
    return within / total, torch.cat([o.flatten() for o in int8_outputs]), calls


def delegated_registrations(edge) -> set[str]:
    """Names of the op registrations whose edge ops the lowered program delegated."""
    found = set()
    for delegate in delegates(edge):
        for n in delegate.original_module.graph_module.graph.nodes:
            op = OP_BY_EDGE.get(node_op(n)) if n.op == "call_function" else None
            if op is not None:
                found.add(op.name)
    return found


@pytest.mark.parametrize("name", list(CASES))
def test_op_lowers_and_matches_pt2e(name, strict):
    case = CASES[name]
    model = case.model().eval()
    example = tuple(torch.randn(s) for s in case.shapes)
    calibration = [tuple(t * case.scale for t in c) for c in calibration_set(example)]
    converted, edge, partitioner, calibration = quantize_and_lower(model, example, strict, calibration)

    assert len(delegates(edge)) == 1, partitioner.cpu_ops
    cpu_compute = [c for c in partitioner.cpu_ops if "quantize" not in c.op]
    assert cpu_compute == [], cpu_compute
    assert set(case.ops) <= delegated_registrations(edge), delegated_registrations(edge)
    payload = payloads(edge)[0]
    assert payload.kind == "tflite" and payload.tflite[4:8] == b"TFL3"

    agree, int8_ref, calls = check_against_pt2e(converted, edge, calibration)
    assert agree >= 0.99, f"{name}: only {agree:.2%} of outputs within one int8 step"
    # conv / depthwise / FC / add / mean: LiteRT's results are exact rounding of the payload's
    # own arithmetic except at TFLite's double-rounding ties (neutronq.lowering.rounding_audit)
    audits = audit_payload(calls[0].payload, [list(call.inputs) for call in calls])
    assert [a for a in audits if not a.explained] == []
    levels = int8_ref.unique()
    assert levels.numel() > 2, f"{name}: constant output"
    # clipped at the int8 limits; -128 is no clipping when it is the real 0 (relu, sigmoid ...)
    zero_is_min = _out_qparams(edge)[0][1] == -128
    saturated = float(((int8_ref >= 127) | ((int8_ref <= -128) & (not zero_is_min))).float().mean())
    assert saturated < 0.5, f"{name}: {saturated:.0%} of outputs saturated"
    if not strict:  # the program emulated (neutronq.emulate) is LiteRT's, bit for bit
        check_emulated_identical_to_litert(name, edge, example, calibration)
