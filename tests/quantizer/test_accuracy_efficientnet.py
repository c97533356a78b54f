"""The accuracy preset on a real pretrained model: EfficientNet-Lite0, per-tensor weights (NXP's
scheme), 100 calibration crops, first 100 evaluation crops.

Measured here (2026-11, benchmarks/bench_accuracy.py): baseline 45 % top-1 agreement / 3.8 dB
logits SQNR; cross-layer equalization (the per-tensor preset) 58 % / 7.58 dB. Floor: measured
minus 1 dB. The issue's goal (90 % / 22 dB) is not reached.
"""

import torch

from neutronq import NeutronTargetSpec, calibrate_and_quantize
from neutronq.metrics import sqnr_db
from neutronq.quantizer.accuracy import recommended

EQUALIZED_SQNR_FLOOR_DB = 7.58 - 1.0
BASELINE_SQNR_DB = 3.81  # tests/quantizer/test_efficientnet.py, same crops


def test_per_tensor_preset_beats_the_seed_scheme(efficientnet_lite0, benchmark_images):
    calibration, evaluation = benchmark_images
    quantizer = recommended(NeutronTargetSpec("imxrt700"), per_channel=False)
    assert quantizer.equalization and not quantizer.bias_correction
    ep = torch.export.export(efficientnet_lite0, (calibration[:1],))
    gm = calibrate_and_quantize(ep, [calibration[i : i + 1] for i in range(len(calibration))], quantizer)
    images = evaluation[:100]
    with torch.no_grad():
        ref = efficientnet_lite0(images)
        out = torch.cat([gm(images[i : i + 1]) for i in range(len(images))])
    sqnr = sqnr_db(ref, out)
    assert sqnr >= EQUALIZED_SQNR_FLOOR_DB
    assert sqnr >= BASELINE_SQNR_DB + 2.0
