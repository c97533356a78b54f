"""The rounding audit: LiteRT's int8 results against exact rounding of each op's real result.

A tiny network with every audited op (conv + ReLU6, depthwise conv, residual add, mean,
linear), per tensor and per channel, is lowered; its payload runs in LiteRT and every audited
op must differ from exact rounding only by one step inside TFLite's two-rounding band. Tampered
tensor values (two steps off; one step off far from a tie) must be caught.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from pipelines import payloads, quantize_and_lower

from neutronq.lowering.payload import quantize_inputs
from neutronq.lowering.rounding_audit import audit_payload, audit_tensors, requantization_band


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(4, 16, 1), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6())
        self.project = nn.Conv2d(16, 4, 1)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        y = x + self.project(self.depthwise(self.expand(x)))
        return self.head(y.mean(dim=(2, 3)))


EXAMPLE = (torch.randn(1, 4, 12, 12),)
AUDITED = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"}


def test_requantization_band_pinned():
    assert requantization_band(0.7) == 0.0  # right shift 0: a single rounding
    assert requantization_band(1.5) == 0.0  # multiplier above one: a left shift, single rounding
    assert requantization_band(0.046) == 2.0**-5  # 0.736 * 2^-4: rounded to 1/16 step first
    assert requantization_band(0.3) == 2.0**-2  # 0.6 * 2^-1: rounded to 1/2 step first


@pytest.fixture(scope="module", params=[False, True], ids=["per_tensor", "per_channel"])
def lowered(request):
    torch.manual_seed(0)
    _, edge, _, calibration = quantize_and_lower(Block().eval(), EXAMPLE,
                                                 quantizer_kwargs={"per_channel": request.param})
    (payload,) = payloads(edge)
    return payload, [quantize_inputs(payload, [x.numpy()]) for (x,) in calibration]


def test_litert_is_exact_up_to_double_rounding(lowered):
    payload, inputs = lowered
    audits = audit_payload(payload, inputs)
    assert {a.op for a in audits} == AUDITED
    for a in audits:
        assert a.elements > 0
        assert a.explained, a
        assert a.max_steps <= 1


def _tensors_of_one_run(payload, x):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=payload.tflite, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], np.ascontiguousarray(np.moveaxis(x, 1, -1)))
    interp.invoke()
    return interp


@pytest.mark.parametrize("tamper", ["two_steps", "one_step_far_from_tie"])
def test_audit_catches_results_that_rounding_does_not_explain(lowered, tamper):
    payload, inputs = lowered
    interp = _tensors_of_one_run(payload, inputs[0][0])
    clean = audit_tensors(payload.tflite, interp.get_tensor)
    conv = next(a for a in clean if a.op == "CONV_2D")
    out_index = next(i for i, t in enumerate(_subgraph_tensor_names(payload)) if t == conv.name)
    values = interp.get_tensor(out_index).astype(np.int32)
    flat = values.reshape(-1)
    # elements away from the clip limits, so that the tampered values are not clipped back
    inside = np.flatnonzero((flat > -100) & (flat < 100))
    if tamper == "two_steps":
        flat[inside[0]] += 2
    else:  # one step on 20 elements: rounding explains a step only within the band of a tie
        flat[inside[:: max(1, len(inside) // 20)][:20]] += 1

    def tampered(i):
        return values if i == out_index else interp.get_tensor(i)

    audit = next(a for a in audit_tensors(payload.tflite, tampered) if a.index == conv.index)
    assert audit.mismatched >= 1
    assert not audit.explained
    if tamper == "two_steps":
        assert audit.max_steps >= 2
    else:  # some tampered elements were not exact before: they are now off by one or two
        assert audit.mismatched >= 20 - clean_mismatched(clean, conv.index)


def clean_mismatched(audits, index) -> int:
    return next(a.mismatched for a in audits if a.index == index)


def _subgraph_tensor_names(payload) -> list[str]:
    from ai_edge_litert import schema_py_generated as tfl

    sg = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(payload.tflite, 0)).subgraphs[0]
    return [t.name.decode() for t in sg.tensors]
