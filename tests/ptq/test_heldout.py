"""The held-out guard: the training steps leave a share of the calibration samples out, measure
their gain there, and a step that does not gain there is undone."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import DepthwiseNet, calibrated, export, smooth_images

from neutronq import NeutronQuantizer, NeutronTargetSpec, prepare_and_calibrate
from neutronq.fx import get_attr_value, set_attr_value
from neutronq.ptq.heldout import STEP_GAINS_META, StepGuard, StepNotKeptWarning, split_holdout
from neutronq.ptq.observed import parameter_observers


def test_split_holds_out_every_fifth_sample():
    train, held = split_holdout(list(range(10)), 0.2)
    assert held == [4, 9] and train == [0, 1, 2, 3, 5, 6, 7, 8]
    assert split_holdout(list(range(10)), 0.0) == (list(range(10)), [])
    assert split_holdout(list(range(4)), 0.2) == (list(range(4)), [])  # too few to leave two out


def _weights(prepared) -> dict:
    observers = parameter_observers(prepared)
    return {n.args[0].target: get_attr_value(prepared, n.args[0]).clone()
            for n in prepared.graph.nodes if n.op == "call_module" and n.target in observers}


def test_a_step_that_loses_on_held_out_samples_is_undone():
    calibration = smooth_images(20, 0)
    prepared = calibrated(DepthwiseNet().eval(), calibration)
    train, held = split_holdout(calibration, 0.2)
    guard = StepGuard(prepared, train, held)
    before = _weights(prepared)

    def damage(_samples):
        for target, value in before.items():
            set_attr_value(prepared, target, value * 1.5, requires_grad=False)

    with pytest.warns(StepNotKeptWarning, match="damage did not raise"):
        gain = guard.run("damage", damage)
    assert not gain.kept and gain.heldout_gain_db < 0
    for target, value in before.items():
        assert torch.equal(get_attr_value(prepared, target), value), target
    assert prepared.meta[STEP_GAINS_META] == [gain]


def test_steps_report_their_gains_and_holdout_zero_keeps_every_step():
    model = DepthwiseNet(spread=2.0, compensate=True).eval()
    calibration = smooth_images(30, 0)
    for holdout in (0.2, 0.0):
        quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), bias_correction=True, holdout=holdout)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StepNotKeptWarning)
            prepared = prepare_and_calibrate(export(model, calibration[0]), calibration, quantizer)
        (gain,) = prepared.meta[STEP_GAINS_META]
        assert gain.step == "bias correction"
        if holdout:
            assert gain.heldout_before_db is not None and gain.kept == (gain.heldout_gain_db > 0)
        else:
            assert gain.heldout_before_db is None and gain.kept


def test_holdout_is_checked_at_construction():
    with pytest.raises(ValueError, match="holdout is the share"):
        NeutronQuantizer(NeutronTargetSpec("imxrt700"), adaround=True, holdout=1.0)
