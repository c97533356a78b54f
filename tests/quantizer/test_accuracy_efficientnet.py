"""The accuracy preset on a real pretrained model: EfficientNet-Lite0, 100 calibration crops,
first 100 evaluation crops.

Measured here (2026-11, benchmarks/bench_accuracy.py), top-1 agreement / logits SQNR vs float:
  per tensor (NXP's scheme): 45 % / 3.81 dB; preset (equalization + bias correction) 67 % / 9.85 dB
  per channel: 90 % / 17.2 dB; preset (bias correction) 97 % / 22.11 dB
Floors: measured minus 1 dB. The issue's goals (90 % / 22 dB per tensor, 95 % / 26 dB per
channel) are not reached.
"""

import pytest
import torch

from neutronq import NeutronTargetSpec, calibrate_and_quantize
from neutronq.metrics import sqnr_db
from neutronq.quantizer.accuracy import recommended

# per_channel -> (preset SQNR floor, SQNR without the preset on the same crops)
FLOORS_DB = {False: (9.85 - 1.0, 3.81), True: (22.11 - 1.0, 17.20)}


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_preset_beats_the_plain_scheme(efficientnet_lite0, benchmark_images, per_channel):
    calibration, evaluation = benchmark_images
    quantizer = recommended(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
    assert quantizer.bias_correction and quantizer.equalization == (not per_channel)
    ep = torch.export.export(efficientnet_lite0, (calibration[:1],))
    gm = calibrate_and_quantize(ep, [calibration[i : i + 1] for i in range(len(calibration))], quantizer)
    images = evaluation[:100]
    with torch.no_grad():
        ref = efficientnet_lite0(images)
        out = torch.cat([gm(images[i : i + 1]) for i in range(len(images))])
    floor, plain = FLOORS_DB[per_channel]
    sqnr = sqnr_db(ref, out)
    assert sqnr >= floor
    assert sqnr >= plain + 3.0
