"""The accuracy preset on a real pretrained model: EfficientNet-Lite0, 100 calibration crops,
first 100 evaluation crops, from disjoint photographs (``neutronq.data.photos.benchmark_split``:
123 photos calibrate, 116 others evaluate). Every figure below is on photos no step saw.

Measured (2026-11-30), top-1 agreement / logits SQNR vs float:
  per tensor (NXP's scheme): 67 % / 5.2 dB; preset (equalization, sequential AdaRound): 18.77 dB
  per channel: 91 % / 18.0 dB; preset (AdaRound, bias correction): 24.11 dB
  (the presets hold 20 % of the calibration crops out: the activation ranges are chosen there,
  and a training step is kept only if it gains there. On this model the MSE ranges lead the
  histogram's by 0.47 dB a sample on those 20 crops, under 2 standard errors, so the histogram
  ranges stay; the first version of the choice took the MSE ranges: 18.71 / 24.31 dB)
Error budget of the preset (first 32 evaluation crops; whole / weights-only / activations-only
SQNR): per tensor 18.73 / 18.23 / 22.12 dB (limited by the weights), per channel 24.16 / 28.03 /
25.58 dB (limited by the activations: with every weight exact the int8 activations alone give
25.6 dB, so no weight-side step takes the per-channel model to the issue's 26 dB on these photos).
  per channel, preset + distillation on the crops and their mirror images: 24.93 dB (+0.82; 25.00 dB
  in an earlier session's run)
  per tensor, preset + distillation (flip, features=1, cosine from 5e-5): 19.21 dB (+0.44)
On the earlier set (evaluation crops cut from the calibration photos) the same steps measured
20.89 / 25.40 / 26.44 / 22.09 dB: part of what they gained there was memorised.
Floors: measured on the held-out photos minus 1 dB. The presets take minutes here (AdaRound),
distillation about ten more.
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
FLOORS_DB = {False: (18.77 - 1.0, 5.2), True: (24.11 - 1.0, 18.0)}
# the per-channel preset + distillation with mirrored images (augment="flip", 12 epochs at 1e-5):
# 24.93 dB on these 100 held-out crops (preset 24.11 dB)
DISTILLED_FLOOR_DB = 24.93 - 1.0
# per tensor: flip, the intermediate activations in the loss, cosine from 5e-5 (12 epochs):
# 19.21 dB on these 100 held-out crops (preset 18.77 dB)
PER_TENSOR_DISTILLATION = {"augment": "flip", "features": 1.0, "learning_rate": 5e-5, "schedule": "cosine"}
PER_TENSOR_DISTILLED_FLOOR_DB = 19.21 - 1.0


def _calibrate_preset(model, calibration, per_channel: bool):
    quantizer = recommended(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
    ep = torch.export.export(model, (calibration[:1],))
    return prepare_and_calibrate(ep, _samples(calibration), quantizer)


def _samples(images, count=None):
    return [images[i : i + 1] for i in range(len(images) if count is None else count)]


def _logits(gm, images):
    """The converted model's outputs, one image at a time (its export's batch)."""
    with torch.no_grad():
        return torch.cat([gm(x) for x in _samples(images)])


def _sqnr(reference, gm, images):
    return sqnr_db(reference, _logits(gm, images))


@pytest.fixture(scope="module")
def per_channel_preset(efficientnet_lite0, benchmark_images):
    """The calibrated per-channel preset (before convert_pt2e): tests take deep copies."""
    return _calibrate_preset(efficientnet_lite0, benchmark_images[0], per_channel=True)


@pytest.fixture(scope="module")
def per_tensor_preset(efficientnet_lite0, benchmark_images):
    """The calibrated per-tensor preset (before convert_pt2e): tests take deep copies."""
    return _calibrate_preset(efficientnet_lite0, benchmark_images[0], per_channel=False)


@pytest.fixture(scope="module")
def float_logits(efficientnet_lite0, benchmark_images):
    """The float model's logits on the first 100 evaluation crops."""
    with torch.no_grad():
        return efficientnet_lite0(benchmark_images[1][:100])


@pytest.fixture(scope="module")
def preset_outputs(benchmark_images, request):
    """``outputs(per_channel)``: the converted preset's logits on the first 100 evaluation crops,
    computed once per scheme (the preset test scores them, the distillation tests start from them)."""
    evaluation = benchmark_images[1][:100]
    computed = {}

    def outputs(per_channel: bool) -> torch.Tensor:
        if per_channel not in computed:
            prepared = request.getfixturevalue("per_channel_preset" if per_channel else "per_tensor_preset")
            computed[per_channel] = _logits(convert_pt2e(copy.deepcopy(prepared)), evaluation)
        return computed[per_channel]

    return outputs


# each scheme's tests in one xdist worker (they share its calibrated preset), the two schemes in two
PER_TENSOR_GROUP = pytest.mark.xdist_group("efficientnet-per-tensor")
PER_CHANNEL_GROUP = pytest.mark.xdist_group("efficientnet-per-channel")


@pytest.mark.parametrize("per_channel", [pytest.param(False, marks=PER_TENSOR_GROUP, id="per-tensor"),
                                         pytest.param(True, marks=PER_CHANNEL_GROUP, id="per-channel")])
def test_preset_beats_the_plain_scheme(benchmark_images, per_channel, float_logits, preset_outputs, request):
    calibration, evaluation = benchmark_images
    quantizer = recommended(NeutronTargetSpec("imxrt700"), per_channel=per_channel)
    assert quantizer.adaround and quantizer.bias_correction == per_channel and quantizer.equalization == (not per_channel)
    assert quantizer.adaround_sequential == (not per_channel)
    prepared = copy.deepcopy(request.getfixturevalue("per_channel_preset" if per_channel else "per_tensor_preset"))
    budget = error_budget(prepared, _samples(evaluation, 32))
    print(f"\n{budget.summary()}")
    assert budget.limited_by == ("activations" if per_channel else "weights")
    ref, out = float_logits, preset_outputs(per_channel)
    floor, plain = FLOORS_DB[per_channel]
    sqnr = sqnr_db(ref, out)
    print(f"\npreset, per channel {per_channel}: {sqnr:.2f} dB")
    assert sqnr >= floor
    assert sqnr >= plain + 3.0
    assert budget.full_db == pytest.approx(sqnr_db(ref[:32], out[:32]), abs=0.3)


@PER_CHANNEL_GROUP
def test_per_channel_distillation_gains_on_unseen_photos(benchmark_images, per_channel_preset, float_logits,
                                                         preset_outputs):
    """The per-channel preset, then distillation on the 100 calibration crops and their mirror
    images (distill(..., augment="flip")), scored on photos it never saw (the issue's 26 dB goal is
    above the 25.6 dB that int8 activations alone allow there: see the error budget above)."""
    calibration, evaluation = benchmark_images
    prepared = copy.deepcopy(per_channel_preset)
    preset = sqnr_db(float_logits, preset_outputs(True))
    distill(prepared, _samples(calibration), augment="flip")
    distilled = _sqnr(float_logits, convert_pt2e(prepared), evaluation[:100])
    print(f"\nper channel: preset {preset:.2f} dB, + flip distillation {distilled:.2f} dB")
    assert distilled >= DISTILLED_FLOOR_DB
    assert distilled > preset


@PER_TENSOR_GROUP
def test_per_tensor_distillation_gains_on_unseen_photos(benchmark_images, per_tensor_preset, float_logits,
                                                        preset_outputs):
    """The per-tensor preset, then distillation with the intermediate activations in the loss
    (features=1), mirrored crops and a cosine schedule from 5e-5, scored on photos it never saw
    (+0.44 dB there; the issue's 22 dB goal is not reached: the per-tensor weights limit it)."""
    calibration, evaluation = benchmark_images
    prepared = copy.deepcopy(per_tensor_preset)
    preset = sqnr_db(float_logits, preset_outputs(False))
    distill(prepared, _samples(calibration), **PER_TENSOR_DISTILLATION)
    distilled = _sqnr(float_logits, convert_pt2e(prepared), evaluation[:100])
    print(f"\nper tensor: preset {preset:.2f} dB, + distillation {PER_TENSOR_DISTILLATION} {distilled:.2f} dB")
    assert distilled >= PER_TENSOR_DISTILLED_FLOOR_DB
    assert distilled > preset
