"""The accuracy preset on a real pretrained model: EfficientNet-Lite0, 100 calibration crops,
first 100 evaluation crops.

Measured here (2026-11, the same crops), top-1 agreement / logits SQNR vs float:
  per tensor (NXP's scheme): 45 % / 3.81 dB; preset (equalization + sequential AdaRound) 98 % /
  20.89 dB (with bias correction too, the preset until 2026-11-22: 94 % / 19.81 dB)
  per channel: 90 % / 17.2 dB; preset (AdaRound + bias correction) 98 % / 25.40 dB
Error budget of the preset (first 32 evaluation crops; whole / weights-only / activations-only
SQNR): per tensor 21.06 / 20.40 / 23.57 dB (limited by the weights), per channel 26.07 / 30.10 /
27.10 dB (limited by the activations: no weight-side step takes it much past 27 dB there).
  per channel, preset + distillation on the crops and their mirror images: 26.44 dB
  per tensor, preset + distillation (flip, features=1, cosine from 5e-5): 22.09 dB
Floors: measured minus 1 dB. The issue's goals are 90 % / 22 dB per tensor and 95 % / 26 dB per
channel: top-1 is reached with the presets; SQNR with distillation (on all 500 crops 26.03 dB per
channel, 22.07 dB per tensor). The presets take minutes here (AdaRound), distillation about ten more.
"""

import copy

import pytest
import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronTargetSpec, error_budget, prepare_and_calibrate
from neutronq.metrics import sqnr_db
from neutronq.ptq.distill import distill
from neutronq.ptq.presets import recommended

# per_channel -> (preset SQNR floor, SQNR without the preset on the same crops)
FLOORS_DB = {False: (20.89 - 1.0, 3.81), True: (25.40 - 1.0, 17.20)}
# the per-channel preset + distillation with mirrored images (augment="flip", 12 epochs at 1e-5):
# 26.44 dB on these 100 crops (this test); 97.0 % / 26.03 dB on all 500 (bench_accuracy.py)
DISTILLED_FLOOR_DB = 26.44 - 1.0
# per tensor: flip, the intermediate activations in the loss, cosine from 5e-5 (12 epochs):
# 22.09 dB on these 100 crops (this test; preset 20.80 dB); 94.2 % / 22.07 dB on all 500 (bench_accuracy.py)
PER_TENSOR_DISTILLATION = {"augment": "flip", "features": 1.0, "learning_rate": 5e-5, "schedule": "cosine"}
PER_TENSOR_DISTILLED_FLOOR_DB = 22.09 - 1.0


def _calibrate_preset(model, calibration, per_channel: bool):
    quantizer = recommended(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
    ep = torch.export.export(model, (calibration[:1],))
    return prepare_and_calibrate(ep, _samples(calibration), quantizer)


def _samples(images, count=None):
    return [images[i : i + 1] for i in range(len(images) if count is None else count)]


def _sqnr(model, gm, images):
    with torch.no_grad():
        return sqnr_db(model(images), torch.cat([gm(x) for x in _samples(images)]))


@pytest.fixture(scope="module")
def per_channel_preset(efficientnet_lite0, benchmark_images):
    """The calibrated per-channel preset (before convert_pt2e): tests take deep copies."""
    return _calibrate_preset(efficientnet_lite0, benchmark_images[0], per_channel=True)


@pytest.fixture(scope="module")
def per_tensor_preset(efficientnet_lite0, benchmark_images):
    """The calibrated per-tensor preset (before convert_pt2e): tests take deep copies."""
    return _calibrate_preset(efficientnet_lite0, benchmark_images[0], per_channel=False)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_preset_beats_the_plain_scheme(efficientnet_lite0, benchmark_images, per_channel, request):
    calibration, evaluation = benchmark_images
    quantizer = recommended(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
    assert quantizer.adaround and quantizer.bias_correction == per_channel and quantizer.equalization == (not per_channel)
    assert quantizer.adaround_sequential == (not per_channel)
    prepared = copy.deepcopy(request.getfixturevalue("per_channel_preset" if per_channel else "per_tensor_preset"))
    budget = error_budget(prepared, _samples(evaluation, 32))
    print(f"\n{budget.summary()}")
    assert budget.limited_by == ("activations" if per_channel else "weights")
    gm = convert_pt2e(prepared)
    images = evaluation[:100]
    with torch.no_grad():
        ref = efficientnet_lite0(images)
        out = torch.cat([gm(x) for x in _samples(images)])
    floor, plain = FLOORS_DB[per_channel]
    sqnr = sqnr_db(ref, out)
    print(f"\npreset, per channel {per_channel}: {sqnr:.2f} dB")
    assert sqnr >= floor
    assert sqnr >= plain + 3.0
    assert budget.full_db == pytest.approx(sqnr_db(ref[:32], out[:32]), abs=0.3)


def test_per_channel_distillation_reaches_the_goal(efficientnet_lite0, benchmark_images, per_channel_preset):
    """The per-channel preset, then distillation on the 100 calibration crops and their mirror
    images (distill(..., augment="flip")): the issue's per-channel goal is 26 dB."""
    calibration, evaluation = benchmark_images
    prepared = copy.deepcopy(per_channel_preset)
    preset = _sqnr(efficientnet_lite0, convert_pt2e(copy.deepcopy(prepared)), evaluation[:100])
    distill(prepared, _samples(calibration), augment="flip")
    distilled = _sqnr(efficientnet_lite0, convert_pt2e(prepared), evaluation[:100])
    print(f"\nper channel: preset {preset:.2f} dB, + flip distillation {distilled:.2f} dB")
    assert distilled >= DISTILLED_FLOOR_DB
    assert distilled > preset + 0.5


def test_per_tensor_distillation_reaches_the_goal(efficientnet_lite0, benchmark_images, per_tensor_preset):
    """The per-tensor preset, then distillation with the intermediate activations in the loss
    (features=1), mirrored crops and a cosine schedule from 5e-5: the issue's per-tensor goal is
    22 dB, reached on all 500 crops with little to spare (22.07 dB, bench_accuracy.py)."""
    calibration, evaluation = benchmark_images
    prepared = copy.deepcopy(per_tensor_preset)
    preset = _sqnr(efficientnet_lite0, convert_pt2e(copy.deepcopy(prepared)), evaluation[:100])
    distill(prepared, _samples(calibration), **PER_TENSOR_DISTILLATION)
    distilled = _sqnr(efficientnet_lite0, convert_pt2e(prepared), evaluation[:100])
    print(f"\nper tensor: preset {preset:.2f} dB, + distillation {PER_TENSOR_DISTILLATION} {distilled:.2f} dB")
    assert distilled >= PER_TENSOR_DISTILLED_FLOOR_DB
    assert distilled > preset + 0.5
