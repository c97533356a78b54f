"""An int32 bias that does not fit its scale is saturated with its sign, said at lowering; one
that does not fit beside the accumulator is clamped, with a warning.

NeutronQuantizer floors weight scales so that neither happens (``bias_safe_weight_scale``); a
model quantized without that floor (here: the floor switched off) has a dead channel with a tiny
weight scale and a bias saturated at the quantizer's bias range, +-2^30. The convert_pt2e model
and the lowered program add the same saturated value (it leaves the accumulator its headroom), and
the lowering names the layer and the channel.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn as nn
from pipelines import quantize_and_lower, run_lowered

from neutronq.lowering.context import ConversionContext, QConst
from neutronq.metrics import within_one_step
from neutronq.quantizer import rules


def test_saturated_bias_keeps_its_sign_is_named_and_agrees(monkeypatch, caplog):
    monkeypatch.setattr(rules, "bias_safe_weight_scale", lambda bias: torch.zeros_like(bias))
    torch.manual_seed(0)
    model = nn.Conv2d(4, 6, 3).eval()
    with torch.no_grad():
        # a dead channel: weights ~1e-6 get the observer's minimal scale (1.2e-7), so int8
        # weights of tens, and 10 / (input scale x 1.2e-7) > 2^30: a saturated int32 bias
        model.weight[2] = torch.randn(4, 3, 3) * 1e-6
        model.bias[2] = 10.0
    example = (torch.randn(1, 4, 8, 8),)
    with caplog.at_level(logging.WARNING, logger="neutronq.lowering.context"):
        converted, edge, _, calibration = quantize_and_lower(model, example, quantizer_kwargs={"per_channel": True})
    assert any("is saturated" in r.getMessage() and "[2]" in r.getMessage() and "conv" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    conv = next(n for n in converted.graph.nodes if n.target == torch.ops.aten.conv2d.default)
    bias = getattr(converted, conv.args[2].args[0].target)  # the int32 constant behind the bias dequantize
    assert int(bias[2]) == 2**30  # saturated, positive as the float bias
    out = next(n for n in edge.exported_program().graph.nodes if n.op == "output")
    step = float(out.args[0][0].args[1])  # the output dequantize's scale
    with torch.no_grad():
        for x in calibration:
            ref, got = converted(*x), run_lowered(edge, x)[0]
            assert within_one_step(ref, got, step) >= 0.99
            assert within_one_step(ref[:, 2], got[:, 2], step) == 1.0


def test_bias_beyond_the_accumulator_headroom_is_clamped_with_its_sign(caplog):
    """A bias re-expressed at lowering (QAT's own bias scale) can exceed int32 minus the room the
    products need: clamped towards zero with its sign, and the layer named."""
    weight = QConst(np.ones((2, 64), np.int8), np.array([1.0]), np.array([0]), 0)
    values = np.array([2.0**31, -(2.0**31)])
    with caplog.at_level(logging.WARNING, logger="neutronq.lowering.context"):
        clamped = ConversionContext._bias_with_headroom(values, weight, 2, "fc_bias")
    limit = 2**31 - 1 - 255 * 127 * 64
    assert clamped.tolist() == [limit, -limit]
    assert any("fc_bias" in r.getMessage() and "clamped" in r.getMessage() for r in caplog.records)
