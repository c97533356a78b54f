"""activation_observer="auto": the activation ranges chosen after calibration, on held-out samples,
among observers that read one calibration histogram (neutronq.ptq.activation_choice)."""

from __future__ import annotations

import pytest
import torch
from helpers import DepthwiseNet, calibrated, export, is_q, q_params, smooth_images
from torchao.quantization.pt2e import HistogramObserver
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, error_budget, prepare_and_calibrate
from neutronq.ptq.activation_choice import ACTIVATION_CHOICE_META, candidate_observer, choose_activation_ranges
from neutronq.ptq.heldout import split_holdout
from neutronq.quantizer.observers import HeldOutChoiceObserver, MSEObserver, PercentileObserver
from neutronq.quantizer.specs import ACTIVATION_CANDIDATES, ACTIVATION_OBSERVERS

SPEC = NeutronTargetSpec("imxrt700")


def _observe(observer, values):
    for v in values:
        observer(v)
    return observer


@pytest.mark.parametrize("name", ACTIVATION_CANDIDATES)
def test_a_candidate_reads_the_histogram_as_its_own_observer_would(name):
    """A candidate built from the calibrated histogram has the range the candidate's observer gets
    from the same data."""
    values = [torch.randn(500) * 3 + 1, torch.randn(500).exp()]
    kwargs = {"dtype": torch.int8, "quant_min": -128, "quant_max": 127, "eps": 2.0 ** -12}
    marked = _observe(HeldOutChoiceObserver(**kwargs), values)
    direct = _observe(ACTIVATION_OBSERVERS[name](**kwargs), values)
    candidate = candidate_observer(marked, name)
    assert type(candidate) is {"histogram": HistogramObserver, "mse": MSEObserver,
                               "percentile": PercentileObserver}[name]
    (s1, z1), (s2, z2) = candidate.calculate_qparams(), direct.calculate_qparams()
    assert float(s1) == float(s2) and int(z1) == int(z2)


def test_an_unknown_candidate_is_refused():
    with pytest.raises(ValueError, match="candidates are"):
        candidate_observer(HeldOutChoiceObserver(), "minmax")


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
    assert choice.chosen == max(choice.sqnr_db, key=choice.sqnr_db.get)
    observers = [prepared.get_submodule(n.target) for n in prepared.graph.nodes if n.op == "call_module"]
    assert not any(type(o) is HeldOutChoiceObserver for o in observers)
    assert sum(type(o) is ACTIVATION_OBSERVERS[choice.chosen] for o in observers) == choice.activations > 0

    expected = calibrated(model, calibration, activation_observer=choice.chosen)
    got, want = convert_pt2e(prepared), convert_pt2e(expected)
    assert [q_params(n) for n in got.graph.nodes if is_q(n)] == [q_params(n) for n in want.graph.nodes if is_q(n)]


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
