"""The accuracy preset on a real pretrained model: EfficientNet-Lite0, 100 calibration crops,
first 100 evaluation crops.

Measured here (2026-11, the same crops), top-1 agreement / logits SQNR vs float:
  per tensor (NXP's scheme): 45 % / 3.81 dB; preset (equalization + sequential AdaRound) 98 % /
  20.89 dB (with bias correction too, the preset until 2026-11-22: 94 % / 19.81 dB)
  per channel: 90 % / 17.2 dB; preset (AdaRound + bias correction) 98 % / 25.40 dB
Error budget of the preset (first 32 evaluation crops; whole / weights-only / activations-only
SQNR): per tensor 21.06 / 20.40 / 23.57 dB (limited by the weights), per channel 26.07 / 30.10 /
27.10 dB (limited by the activations: no weight-side step takes it much past 27 dB there).
Floors: measured minus 1 dB. The issue's goals are 90 % / 22 dB per tensor and 95 % / 26 dB per
channel: top-1 is reached in both, SQNR in neither. The preset takes minutes here (AdaRound).
"""

import pytest
import torch

from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronTargetSpec, error_budget, prepare_and_calibrate
from neutronq.metrics import sqnr_db
from neutronq.quantizer.accuracy import recommended

# per_channel -> (preset SQNR floor, SQNR without the preset on the same crops)
FLOORS_DB = {False: (20.89 - 1.0, 3.81), True: (25.40 - 1.0, 17.20)}


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_preset_beats_the_plain_scheme(efficientnet_lite0, benchmark_images, per_channel):
    calibration, evaluation = benchmark_images
    quantizer = recommended(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
    assert quantizer.adaround and quantizer.bias_correction == per_channel and quantizer.equalization == (not per_channel)
    assert quantizer.adaround_sequential == (not per_channel)
    ep = torch.export.export(efficientnet_lite0, (calibration[:1],))
    prepared = prepare_and_calibrate(ep, [calibration[i : i + 1] for i in range(len(calibration))], quantizer)
    budget = error_budget(prepared, [evaluation[i : i + 1] for i in range(32)])
    print(f"\n{budget.summary()}")
    assert budget.limited_by == ("activations" if per_channel else "weights")
    gm = convert_pt2e(prepared)
    images = evaluation[:100]
    with torch.no_grad():
        ref = efficientnet_lite0(images)
        out = torch.cat([gm(images[i : i + 1]) for i in range(len(images))])
    floor, plain = FLOORS_DB[per_channel]
    sqnr = sqnr_db(ref, out)
    print(f"\npreset, per channel {per_channel}: {sqnr:.2f} dB")
    assert sqnr >= floor
    assert sqnr >= plain + 3.0
    assert budget.full_db == pytest.approx(sqnr_db(ref[:32], out[:32]), abs=0.3)
