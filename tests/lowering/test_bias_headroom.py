"""An int32 bias that does not fit beside the accumulator is clamped at lowering, with a warning.

NeutronQuantizer floors per-channel weight scales so that this does not happen
(``bias_safe_weight_scale``); a model quantized without that floor (here: the floor switched off)
has a dead channel with a tiny weight scale and a bias saturated at the int32 limit. TFLite's
int32 accumulator would wrap when products are added to it; the lowering leaves it headroom.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
from pipelines import quantize_and_lower, run_lowered

from neutronq.metrics import within_one_step
from neutronq.quantizer import rules


def test_saturated_bias_is_clamped_with_headroom_and_agrees(monkeypatch, caplog):
    monkeypatch.setattr(rules, "bias_safe_weight_scale", lambda bias: torch.zeros_like(bias))
    torch.manual_seed(0)
    model = nn.Conv2d(4, 6, 3).eval()
    with torch.no_grad():
        # a dead channel: weights ~1e-6 get the observer's minimal scale (1.2e-7), so int8
        # weights of tens, and 10 / (input scale x 1.2e-7) > 2^31: a saturated int32 bias
        model.weight[2] = torch.randn(4, 3, 3) * 1e-6
        model.bias[2] = 10.0
    example = (torch.randn(1, 4, 8, 8),)
    with caplog.at_level(logging.WARNING, logger="neutronq.lowering.context"):
        converted, edge, _, calibration = quantize_and_lower(model, example, quantizer_kwargs={"per_channel": True})
    assert any("does not fit beside the accumulator" in r.getMessage() and "[2]" in r.getMessage()
               for r in caplog.records)
    out = next(n for n in edge.exported_program().graph.nodes if n.op == "output")
    step = float(out.args[0][0].args[1])  # the output dequantize's scale
    with torch.no_grad():
        for x in calibration:
            ref, got = converted(*x), run_lowered(edge, x)[0]
            assert within_one_step(ref, got, step) >= 0.99
            assert within_one_step(ref[:, 2], got[:, 2], step) == 1.0
