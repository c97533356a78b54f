"""End to end: EfficientNet-Lite0 (pretrained) quantized per tensor and per channel, lowered,
and its payloads run in LiteRT's reference kernels against the convert_pt2e model.

The test runs the first ``EVALUATION`` crops of the benchmark evaluation set to keep CI time
modest; ``benchmarks/bench_lowering.py`` runs all 500 (figures in its output).

Agreement: the issue asks for 99.5 % top-1 and 99 % of logits within one int8 step; TFLite's
int8 kernels do not reach that against convert_pt2e. They requantize in two roundings (a 31-bit
high multiply that rounds to 2^-r of a step, r the multiplier's right shift, then a rounding
shift by r), so a value within 2^-(r+1) of a rounding tie can land one step from where exact
rounding, which convert_pt2e computes, puts it. ``test_every_arithmetic_op_is_exact_up_to_
double_rounding`` checks that this is the only difference: every conv, depthwise conv, add,
mean and fully connected op of the payload matches exact rounding of its own int8 inputs except
by one step inside that band. Per op that is 0-8 % of elements (r = 2 on some depthwise convs:
band 1/8 step); per tensor, one step on an input becomes up to 25 steps after some depthwise
convs, and the differences compound over EfficientNet's depth. The floors below are the
measured figures minus a margin, so a lowering regression still fails.
"""

from __future__ import annotations

import pytest
import torch
from pipelines import run_lowered

from neutronq.lowering.payload import decode_payload, delegate_payloads, quantize_inputs
from neutronq.lowering.rounding_audit import audit_payload
from neutronq.metrics import within_one_step

EVALUATION = 40
# Floors = measured minus a margin (see the docstring). Measured on the earlier image set (evaluation
# crops from the calibration photos; the floors hold on the split set) on 40 crops, per tensor: top-1
# 38/40, logits within one step 90.9 %; per channel on 10 crops: top-1 10/10, within one step 95.1 %.
# The targets (99.5 % top-1, 99 % within one step) are not met with TFLite's kernels.
TOP1_FLOOR = {"per_tensor": 0.90, "per_channel": 0.90}
WITHIN_ONE_STEP_FLOOR = {"per_tensor": 0.85, "per_channel": 0.88}


def _weight_bytes(gm) -> int:
    """int8 weights + int32 biases, plus, for per-channel quantization, the per-axis scales
    (float32) and zero points (int64) that the TFLite schema stores for each channel of the
    weights and of the bias (12 bytes per channel each)."""
    tensors = list(gm.named_buffers()) + list(gm.named_parameters())
    data = sum(t.numel() * t.element_size() for _, t in tensors if t.dtype in (torch.int8, torch.int32))
    per_axis_channels = sum(t.numel() for name, t in tensors
                            if name.startswith("_scale_") and t.dtype == torch.float32 and t.numel() > 1)
    return data + 12 * per_axis_channels


@pytest.fixture(scope="module", params=["per_tensor", "per_channel"])
def lowered(request, efficientnet_int8, benchmark_images):
    """The session's shared quantized and lowered EfficientNet-Lite0 (tests/conftest.py)."""
    per_channel = request.param == "per_channel"
    edge, partitioner = efficientnet_int8.lowered(per_channel)
    return request.param, efficientnet_int8.quantized(per_channel), edge, partitioner, \
        benchmark_images[1][:EVALUATION]


def test_every_conv_and_linear_is_delegated(lowered):
    mode, converted, edge, partitioner, _ = lowered
    on_cpu = [c for c in partitioner.cpu_ops if c.op in ("aten.convolution.default", "aten.addmm.default",
                                                         "aten.mm.default")]
    assert on_cpu == []
    fraction = partitioner.report.npu_mac_fraction
    print(f"\n{mode}: {fraction:.4%} of {partitioner.report.macs_total / 1e6:.1f} M MACs on the NPU, "
          f"{len(partitioner.report.partitions)} partition(s)")
    assert fraction == 1.0


def test_payload_is_no_bigger_than_weights_plus_one_percent(lowered):
    mode, converted, edge, _, _ = lowered
    payload = sum(len(p) for p in delegate_payloads(edge))
    weights = _weight_bytes(converted)
    print(f"\n{mode}: payload {payload} B, weights {weights} B ({payload / weights:.4f}x)")
    assert weights > 4_000_000
    assert payload <= 1.01 * weights


def test_payloads_agree_with_quantized_model(lowered):
    mode, converted, edge, _, evaluation = lowered
    out = next(n for n in edge.exported_program().graph.nodes if n.op == "output")
    step = float(out.args[0][0].args[1])
    with torch.no_grad():
        pairs = [(converted(x[None]), run_lowered(edge, (x[None],))[0]) for x in evaluation]
    ref, got = torch.cat([r for r, _ in pairs]), torch.cat([g for _, g in pairs])
    top1 = int((ref.argmax(1) == got.argmax(1)).sum())
    within = within_one_step(ref, got, step)
    print(f"\n{mode}: top-1 agreement {top1}/{len(evaluation)}, logits within one step {within:.4%}")
    assert top1 / len(evaluation) >= TOP1_FLOOR[mode]
    assert within >= WITHIN_ONE_STEP_FLOOR[mode]


def test_every_arithmetic_op_is_exact_up_to_double_rounding(lowered):
    """LiteRT's only departure from exact rounding is TFLite's two-rounding requantization."""
    mode, _, edge, _, evaluation = lowered
    (payload,) = [decode_payload(p) for p in delegate_payloads(edge)]
    audits = audit_payload(payload, [quantize_inputs(payload, [x[None].numpy()]) for x in evaluation[:2]])
    assert len([a for a in audits if a.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]) == 49
    worst = max(audits, key=lambda a: a.mismatch_rate)
    print(f"\n{mode}: {len(audits)} ops audited, worst {worst.op} {worst.name}: "
          f"{worst.mismatch_rate:.2%} one step off, all within {worst.band:.4f} step of a tie")
    unexplained = [a for a in audits if not a.explained]
    assert unexplained == []
