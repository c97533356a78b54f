"""Distillation: the calibrated int8 model trained as a whole towards its float self, scales fixed."""

import pytest
import torch
from helpers import DepthwiseNet, calibrated, export, smooth_images
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize, error_budget
from neutronq.metrics import sqnr_db
from neutronq.ptq.distill import ActivationRecorder, distill, feature_loss
from neutronq.ptq.observed import parameter_observers
from neutronq.quantizer.steps import flip_images


def _sqnr(model, gm, data):
    with torch.no_grad():
        return sqnr_db(torch.cat([model(*x) for x in data]), torch.cat([gm(*x) for x in data]))


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_distillation_lowers_held_out_error_and_keeps_quantization_parameters(per_channel):
    model = DepthwiseNet(spread=2.0, compensate=True).eval()
    calibration, held_out = smooth_images(64, 0), smooth_images(32, 1)
    prepared = calibrated(model, calibration, per_channel=per_channel)
    observers = {t: prepared.get_submodule(t) for t in parameter_observers(prepared)}
    before = {t: [q.clone() for q in o.calculate_qparams()] for t, o in observers.items() if t}
    plain = convert_pt2e(calibrated(model, calibration, per_channel=per_channel))
    distill(prepared, calibration, epochs=20, learning_rate=1e-4)
    for target, (scale, zero_point) in before.items():
        new_scale, new_zero_point = prepared.get_submodule(target).calculate_qparams()
        assert torch.equal(scale, new_scale) and torch.equal(zero_point, new_zero_point), target
    # the float values stay in meta: the budget's reference is still the float model
    budget = error_budget(prepared, held_out)
    distilled = convert_pt2e(prepared)
    gain = _sqnr(model, distilled, held_out) - _sqnr(model, plain, held_out)
    print(f"\nper channel {per_channel}: held-out SQNR gain {gain:+.2f} dB, budget whole {budget.full_db:.2f} dB")
    assert gain > 0.5  # measured +1.9 dB per tensor, +1.4 dB per channel
    assert budget.full_db == pytest.approx(_sqnr(model, distilled, held_out), abs=0.3)


def test_flip_augmentation_trains_on_mirrored_inputs_and_still_gains():
    model = DepthwiseNet(spread=2.0, compensate=True).eval()
    calibration, held_out = smooth_images(64, 0), smooth_images(32, 1)
    plain = convert_pt2e(calibrated(model, calibration))
    flipped = convert_pt2e(distill(calibrated(model, calibration), calibration, epochs=20,
                                   learning_rate=1e-4, augment="flip"))
    gain = _sqnr(model, flipped, held_out) - _sqnr(model, plain, held_out)
    print(f"\nflip augmentation: held-out SQNR gain {gain:+.2f} dB")
    assert gain > 0.5


def _inner_error(prepared, data) -> float:
    """Mean relative int8 error of the intermediate activations before the output (what
    features= adds to the loss)."""
    int8 = ActivationRecorder(prepared, round_weights=True, round_activations=True)
    float_model = ActivationRecorder(prepared, float_params=True)
    with torch.no_grad():
        return float(torch.stack([feature_loss(int8.run_recording(x, True)[1][:-1],
                                                float_model.run_recording(x, True)[1][:-1]) for x in data]).mean())


def test_feature_loss_keeps_the_intermediate_activations_closer():
    model = DepthwiseNet(spread=2.0, compensate=True).eval()
    calibration, held_out = smooth_images(64, 0), smooth_images(32, 1)
    plain = calibrated(model, calibration)
    observers = [n for n in plain.graph.nodes if n.op == "call_module" and n.target not in parameter_observers(plain)
                 and hasattr(plain.get_submodule(n.target), "calculate_qparams")]
    assert len(ActivationRecorder(plain).run_recording(held_out[0], True)[1]) == len(observers) > 2
    start = _inner_error(plain, held_out)
    outputs_only = distill(calibrated(model, calibration), calibration, epochs=20, learning_rate=1e-4)
    both = distill(calibrated(model, calibration), calibration, epochs=20, learning_rate=1e-4, features=1.0)
    errors = [_inner_error(p, held_out) for p in (outputs_only, both)]
    gain = _sqnr(model, convert_pt2e(both), held_out) - _sqnr(model, convert_pt2e(plain), held_out)
    print(f"\nheld-out inner activation error {start:.5f}: outputs only -> {errors[0]:.5f}, "
          f"with features=1 -> {errors[1]:.5f}; output SQNR gain {gain:+.2f} dB")
    # output-only training lets the inner layers drift to serve the output; the feature loss holds them
    assert errors[1] < errors[0]
    assert gain > 0.3


def test_cosine_schedule_still_gains():
    model = DepthwiseNet(spread=2.0, compensate=True).eval()
    calibration, held_out = smooth_images(64, 0), smooth_images(32, 1)
    plain = convert_pt2e(calibrated(model, calibration))
    cosine = convert_pt2e(distill(calibrated(model, calibration), calibration, epochs=20, learning_rate=1e-4,
                                  schedule="cosine"))
    gain = _sqnr(model, cosine, held_out) - _sqnr(model, plain, held_out)
    print(f"\ncosine schedule: held-out SQNR gain {gain:+.2f} dB")
    assert gain > 0.5


def test_flip_images_mirrors_image_inputs_only():
    image, other = torch.arange(24.0).reshape(1, 2, 3, 4), torch.arange(4.0)
    draws = [flip_images((image, other), torch.Generator().manual_seed(seed)) for seed in range(20)]
    for flipped_image, same in draws:
        assert torch.equal(same, other)
        assert torch.equal(flipped_image, image) or torch.equal(flipped_image, image.flip(-1))
    assert 0 < sum(torch.equal(d[0], image.flip(-1)) for d in draws) < 20


def test_distillation_through_the_quantizer_option():
    model = DepthwiseNet(spread=2.0, compensate=True).eval()
    calibration, held_out = smooth_images(32, 0), smooth_images(16, 1)
    plain = calibrate_and_quantize(export(model, calibration[0]), calibration,
                                   NeutronQuantizer(NeutronTargetSpec("imxrt700")))
    for setting in (True, {"augment": "flip", "learning_rate": 2e-5}):
        tuned = calibrate_and_quantize(export(model, calibration[0]), calibration,
                                       NeutronQuantizer(NeutronTargetSpec("imxrt700"), distillation=setting))
        assert _sqnr(model, tuned, held_out) > _sqnr(model, plain, held_out), setting


def test_bad_use_is_refused():
    with pytest.raises(ValueError, match="distillation=True is a PTQ step"):
        NeutronQuantizer(NeutronTargetSpec("imxrt700"), is_qat=True, distillation=True)
    with pytest.raises(ValueError, match=r"unknown settings \['lr'\]"):
        NeutronQuantizer(NeutronTargetSpec("imxrt700"), distillation={"lr": 1e-4})
    for bad, message in (({"epochs": 0}, "epochs >= 1"), ({"augment": "rotate"}, "unknown augment 'rotate'"),
                         ({"features": -1}, "features is the weight"), ({"features": "yes"}, "features is the weight"),
                         ({"schedule": "step"}, "unknown schedule 'step'")):
        with pytest.raises(ValueError, match=message):  # before any calibration
            NeutronQuantizer(NeutronTargetSpec("imxrt700"), distillation=bad)
    with pytest.raises(TypeError, match="True, False or a dict"):
        NeutronQuantizer(NeutronTargetSpec("imxrt700"), distillation="yes")
    model = DepthwiseNet().eval()
    calibration = smooth_images(4, 0)
    with pytest.raises(ValueError, match="unknown augment 'rotate'"):
        distill(prepared := calibrated(model, calibration), calibration, augment="rotate")
    with pytest.raises(ValueError, match="4-D"):
        distill(prepared, [(x.flatten(),) for (x,) in calibration], augment="flip")
    with pytest.raises(ValueError, match="epochs >= 1"):
        distill(prepared, calibration, epochs=0)
    with pytest.raises(ValueError, match="got none"):
        distill(prepared, [])
    with pytest.raises(ValueError, match="no quantized weights"):
        distill(convert_pt2e(prepared), calibration)


def test_batched_steps_match_one_by_one():
    """The samples of a step run as one batch where the graph allows it; the loss weighs each as
    if run alone, so the result is the one-by-one result up to float summation order."""
    model = DepthwiseNet(spread=2.0, compensate=True).eval()
    calibration, held_out = smooth_images(32, 0), smooth_images(16, 1)
    results = {}
    for batched in (True, False):
        prepared = calibrated(model, calibration)
        distill(prepared, calibration, epochs=4, learning_rate=1e-4, augment="flip", features=1.0, batched=batched)
        results[batched] = _sqnr(model, convert_pt2e(prepared), held_out)
    print(f"\nheld-out SQNR batched {results[True]:.3f} dB, one by one {results[False]:.3f} dB")
    assert results[True] == pytest.approx(results[False], abs=0.05)


def test_validation_keeps_the_best_epoch():
    """With held-out samples distillation keeps its best epoch there; when every epoch is worse
    than the start (a learning rate far too high), the calibrated weights come back unchanged."""
    model = DepthwiseNet(spread=2.0, compensate=True).eval()
    calibration, held_out = smooth_images(16, 0), smooth_images(8, 1)
    prepared = calibrated(model, calibration)
    before = {n: t.clone() for n, t in prepared.named_parameters()}
    distill(prepared, calibration, validation=held_out, epochs=2, learning_rate=1.0)
    for name, value in prepared.named_parameters():
        assert torch.equal(value, before[name]), name
