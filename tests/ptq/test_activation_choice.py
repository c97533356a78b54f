"""activation_observer="auto": the activation ranges chosen after calibration, on held-out samples,
among observers that read one calibration histogram (neutronq.ptq.activation_choice)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import DepthwiseNet, calibrated, export, is_dq, is_q, smooth_images
from torchao.quantization.pt2e import HistogramObserver
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, error_budget, prepare_and_calibrate
from neutronq.ptq.activation_choice import (
    ACTIVATION_CHOICE_META,
    SIGNIFICANCE,
    ActivationChoice,
    choose_activation_ranges,
    paired_gain_db,
    pick_candidate,
)
from neutronq.ptq.heldout import split_holdout
from neutronq.quantizer.observers import HeldOutChoiceObserver, MSEObserver, PercentileObserver
from neutronq.quantizer.specs import ACTIVATION_CANDIDATES, ACTIVATION_OBSERVERS

SPEC = NeutronTargetSpec("imxrt700")


def _observe(observer, values):
    for v in values:
        observer(v)
    return observer


@pytest.mark.parametrize("name", ACTIVATION_CANDIDATES)
def test_each_rule_reads_the_histogram_as_its_own_observer_would(name):
    """With ``rule`` set, the chosen observer has the range the rule's own observer gets from the
    same data."""
    values = [torch.randn(500) * 3 + 1, torch.randn(500).exp()]
    kwargs = {"dtype": torch.int8, "quant_min": -128, "quant_max": 127, "eps": 2.0 ** -12}
    marked = _observe(HeldOutChoiceObserver(**kwargs), values)
    direct = _observe(ACTIVATION_OBSERVERS[name](**kwargs), values)
    assert marked.rule == "histogram"
    marked.rule = name
    (s1, z1), (s2, z2) = marked.calculate_qparams(), direct.calculate_qparams()
    assert float(s1) == float(s2) and int(z1) == int(z2)


def test_the_candidates_are_named_as_the_observers():
    assert ACTIVATION_CANDIDATES == ("histogram", "mse", "percentile")
    assert (ACTIVATION_OBSERVERS["histogram"], ACTIVATION_OBSERVERS["mse"], ACTIVATION_OBSERVERS["percentile"]) == \
        (HistogramObserver, MSEObserver, PercentileObserver)


def test_auto_asks_for_the_choice_and_other_observers_do_not():
    assert NeutronQuantizer(SPEC, activation_observer="auto").steps.activation_choice
    assert NeutronQuantizer(SPEC, overrides={"aten.conv2d.default": {"activation_observer": "auto"}}).steps.any
    assert not NeutronQuantizer(SPEC).steps.activation_choice
    assert not NeutronQuantizer(SPEC, activation_observer="mse").steps.any
    assert not NeutronQuantizer(SPEC, is_qat=True, activation_observer="auto").steps.activation_choice


def test_the_choice_is_the_candidate_with_the_best_held_out_figure():
    """Each candidate's figure is the activations-only SQNR that the error budget measures on the
    same held-out samples for the model calibrated with that observer; the best one is kept and
    convert_pt2e uses its ranges."""
    calibration = smooth_images(20, 0)
    model = DepthwiseNet().eval()
    quantizer = NeutronQuantizer(SPEC, activation_observer="auto")
    prepared = prepare_and_calibrate(export(model, calibration[0]), calibration, quantizer)
    choice = prepared.meta[ACTIVATION_CHOICE_META]
    _, held = split_holdout(calibration, quantizer.steps.holdout)
    assert choice.heldout and choice.samples == len(held) == 4
    assert list(choice.sqnr_db) == list(ACTIVATION_CANDIDATES)
    for name in ACTIVATION_CANDIDATES:
        alone = calibrated(model, calibration, activation_observer=name)
        assert choice.sqnr_db[name] == pytest.approx(error_budget(alone, held).activations_only_db, abs=1e-6)
    best = max(choice.sqnr_db, key=choice.sqnr_db.get)
    if best == "histogram":
        assert choice.challenger is None and choice.chosen == "histogram"
    else:  # the best other rule replaces the histogram only on clear evidence (test_the_challenger_...)
        assert choice.challenger == best
        assert choice.chosen == (best if choice.gain_db >= SIGNIFICANCE * choice.gain_se_db else "histogram")
    observers = {id(m): m for m in prepared.modules() if type(m) is HeldOutChoiceObserver}.values()
    assert len(observers) == choice.activations > 0 and {o.rule for o in observers} == {choice.chosen}

    # every quantize / dequantize of the converted model, the int32 biases' included (their scale is
    # derived from the input observer's), is the one the chosen observer alone gives
    expected = calibrated(model, calibration, activation_observer=choice.chosen)
    got, want = convert_pt2e(prepared), convert_pt2e(expected)
    assert _qdq(got) == _qdq(want) and any(p[-1] == torch.int32 for p in _qdq(got))


def _qdq(gm) -> list:
    return [tuple(n.args[1:]) for n in gm.graph.nodes if is_q(n) or is_dq(n)]


def test_without_a_held_out_share_the_choice_uses_every_sample():
    calibration = smooth_images(10, 1)
    quantizer = NeutronQuantizer(SPEC, activation_observer="auto", holdout=0.0)
    prepared = prepare_and_calibrate(export(DepthwiseNet().eval(), calibration[0]), calibration, quantizer)
    choice = prepared.meta[ACTIVATION_CHOICE_META]
    assert not choice.heldout and choice.samples == 10
    assert "on 10 calibration samples" in choice.summary()


def test_a_model_without_auto_observers_is_left_alone():
    calibration = smooth_images(6, 2)
    prepared = calibrated(DepthwiseNet().eval(), calibration)
    assert choose_activation_ranges(prepared, calibration) is None
    assert ACTIVATION_CHOICE_META not in prepared.meta


@pytest.mark.parametrize("name", ACTIVATION_CANDIDATES[1:])
def test_a_rule_set_after_calibration_reaches_the_derived_bias_scales(name):
    """The rule changes on the observer the bias specs derive from, so convert_pt2e writes every
    scale (int32 biases included) as the rule's own observer would."""
    calibration = smooth_images(8, 3)
    model = DepthwiseNet().eval()
    prepared = calibrated(model, calibration, activation_observer="auto")
    for module in prepared.modules():
        if type(module) is HeldOutChoiceObserver:
            module.rule = name
    want = convert_pt2e(calibrated(model, calibration, activation_observer=name))
    assert _qdq(convert_pt2e(prepared)) == _qdq(want)
    assert _qdq(want) != _qdq(convert_pt2e(calibrated(model, calibration)))  # the rule changed something


def _offset(reference, per_row):
    """``reference`` with each row moved by its own constant: that row's squared error is its
    offset squared."""
    return reference + torch.tensor(per_row, dtype=reference.dtype)[:, None]


def test_the_paired_gain_is_the_mean_per_sample_error_ratio_and_its_standard_error():
    reference = torch.zeros(4, 5)
    gain, se = paired_gain_db(reference, _offset(reference, [2, 1, 1, 1]), _offset(reference, [1, 1, 0.5, 0.5]))
    six = 10 * math.log10(4)  # each halved error: 6.02 dB; the gains are (6.02, 0, 6.02, 6.02)
    assert gain == pytest.approx(3 * six / 4) and se == pytest.approx(six / 4)
    gain, se = paired_gain_db(reference[:1], _offset(reference[:1], [2]), _offset(reference[:1], [1]))
    assert gain == pytest.approx(six) and se == math.inf
    exact = paired_gain_db(reference[:2], reference[:2], reference[:2])
    assert exact == (0.0, 0.0)


def test_the_challenger_replaces_the_histogram_only_at_two_standard_errors():
    """mse gains 6.02 dB on three samples of four (3 standard errors): taken; on one of three
    (1 standard error), though its SQNR over all samples is the best: the histogram stays."""
    reference = torch.ones(4, 5)
    clear = pick_candidate(reference, {"histogram": _offset(reference, [2, 1, 1, 1]),
                                       "mse": _offset(reference, [1, 1, 0.5, 0.5]),
                                       "percentile": _offset(reference, [3, 3, 3, 3])})
    assert clear["challenger"] == clear["chosen"] == "mse"
    assert clear["gain_db"] == pytest.approx(3 * clear["gain_se_db"])
    assert clear["sqnr_db"]["mse"] > clear["sqnr_db"]["histogram"] > clear["sqnr_db"]["percentile"]

    reference = reference[:3]
    noise = pick_candidate(reference, {"histogram": _offset(reference, [2, 1, 1]),
                                       "mse": _offset(reference, [1, 1, 1]),
                                       "percentile": _offset(reference, [3, 3, 3])})
    assert noise["challenger"] == "mse" and noise["chosen"] == "histogram"
    assert noise["sqnr_db"]["mse"] > noise["sqnr_db"]["histogram"]
    assert noise["gain_db"] == pytest.approx(noise["gain_se_db"])
    choice = ActivationChoice(activations=7, samples=3, heldout=True, **noise)
    assert choice.summary() == (
        "activation ranges: histogram for 7 activations (int8 activations, float weights, on 3 held-out samples: "
        f"histogram {noise['sqnr_db']['histogram']:.2f} dB, mse {noise['sqnr_db']['mse']:.2f} dB, percentile "
        f"{noise['sqnr_db']['percentile']:.2f} dB; mse +2.01 \u00b1 2.01 dB a sample over histogram, under 2 "
        "standard errors: the histogram ranges stay)")

    best = pick_candidate(reference, {"histogram": reference, "mse": _offset(reference, [1, 1, 1]),
                                      "percentile": _offset(reference, [1, 1, 1])})
    assert best["chosen"] == "histogram" and best["challenger"] is None and best["gain_db"] is None


def test_one_sample_never_replaces_the_histogram():
    reference = torch.ones(1, 5)
    one = pick_candidate(reference, {"histogram": _offset(reference, [2]), "mse": _offset(reference, [1]),
                                     "percentile": _offset(reference, [3])})
    assert one["chosen"] == "histogram" and one["challenger"] == "mse" and one["gain_se_db"] is None
    assert "(one sample)" in ActivationChoice(activations=1, samples=1, heldout=False, **one).figures()
