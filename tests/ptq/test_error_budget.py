"""The int8 error budget: weights-only and activations-only SQNR, and the costliest activations."""

import pytest
import torch
from helpers import DepthwiseNet, export
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, error_budget, prepare_and_calibrate
from neutronq.metrics import sqnr_db
from neutronq.ptq.error_budget import outputs_with_rounding


def Net(weight_spread: float = 0.0):
    """``helpers.DepthwiseNet`` with its linear layer undoing the depthwise gains."""
    return DepthwiseNet(spread=weight_spread, compensate=True)


def _data(count, seed, spike=0.0):
    """Random inputs; ``spike`` is added to one pixel of channel 0, stretching the input's range."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(count):
        x = torch.randn(1, 3, 6, 6, generator=g)
        x[0, 0, 0, 0] += spike
        data.append((x,))
    return data


def _calibrated(model, calibration, **options):
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), **options)
    return prepare_and_calibrate(export(model, calibration[0]), calibration, quantizer)


def test_full_figure_is_what_convert_pt2e_computes():
    model = Net(weight_spread=2.0).eval()
    prepared = _calibrated(model, _data(16, 0))
    held_out = _data(16, 1)
    budget = error_budget(prepared, held_out)
    converted = convert_pt2e(prepared)
    with torch.no_grad():
        ref = torch.cat([model(*x) for x in held_out])
        out = torch.cat([converted(*x) for x in held_out])
    assert budget.samples == 16
    assert budget.full_db == pytest.approx(sqnr_db(ref, out), abs=0.2)


def test_one_outlier_weight_makes_per_tensor_weights_the_limit():
    """A linear layer over 256 inputs with one weight 30x the others: per tensor, that weight sets
    the int8 step of all 4096, while the output's range grows only about twofold."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(256, 16)
    with torch.no_grad():
        model.weight.copy_(torch.randn(16, 256, generator=g) / 16)
        model.weight[0, 0] = 30.0 / 16
    data = [(torch.randn(1, 256, generator=g),) for _ in range(32)]
    budget = error_budget(_calibrated(model.eval(), data[:16]), data[16:])
    assert budget.limited_by == "weights"
    assert budget.weights_only_db + 6.0 < budget.activations_only_db
    # noise adds as power: the whole is no better than its worse part (small slack for chance)
    assert budget.full_db <= budget.weights_only_db + 0.5
    assert "limited by the weights" in budget.summary()


def test_a_stretched_input_range_is_the_limit_and_ranked_first():
    model = Net(weight_spread=0.0).eval()
    with torch.no_grad():
        model.pw.weight[:, 0] = 0.0  # the spike stretches the input's range only, not the layers after
    calibration = _data(16, 0, spike=200.0)  # the input's int8 step becomes ~0.8
    budget = error_budget(_calibrated(model, calibration, per_channel=True), _data(16, 1), top_activations=3)
    assert budget.limited_by == "activations"
    assert budget.activations_only_db + 6.0 < budget.weights_only_db
    assert len(budget.activations) == 3
    observer, rounds, gain = budget.activations[0]
    assert rounds == "x"  # the model input
    assert gain > 6.0
    assert [g for _, _, g in budget.activations] == sorted((g for _, _, g in budget.activations), reverse=True)


def test_reference_is_the_float_model_after_adaround_and_bias_correction():
    """AdaRound and bias correction change the graph's weights and biases; the budget's float
    reference and its activations-only run put the kept float ones back."""
    model = Net(weight_spread=2.0).eval()
    calibration, held_out = _data(16, 0), _data(8, 1)
    tuned = _calibrated(model, calibration, adaround=True, bias_correction=True)
    with torch.no_grad():
        expected = torch.cat([model(*x) for x in held_out])
    reference = outputs_with_rounding(tuned, held_out, round_weights=False, round_activations=False, float_params=True)
    as_changed = outputs_with_rounding(tuned, held_out, round_weights=False, round_activations=False, float_params=False)
    assert torch.allclose(reference, expected, atol=1e-5)
    assert not torch.allclose(as_changed, expected, atol=1e-3)  # the graph's parameters did change
    plain = error_budget(_calibrated(model, calibration), held_out)
    budget = error_budget(tuned, held_out)
    assert budget.activations_only_db == pytest.approx(plain.activations_only_db, abs=0.05)


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(3 * 6 * 6, 5)

    def forward(self, x):
        return self.conv(x), self.fc(x.flatten(1))


def test_every_output_of_a_multi_output_model_counts():
    model = TwoHeads().eval()
    budget = error_budget(_calibrated(model, _data(8, 0)), _data(4, 1))
    assert budget.samples == 4
    assert 20.0 < budget.full_db < 60.0


def test_refuses_an_uncalibrated_model_a_converted_model_and_no_inputs():
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    model = Net().eval()
    raw = prepare_pt2e(export(model, _data(1, 0)[0]).module(), NeutronQuantizer(NeutronTargetSpec("imxrt700")))
    with pytest.raises(ValueError, match="seen no data.*calibrate"):
        error_budget(raw, _data(2, 1))
    prepared = _calibrated(model, _data(4, 0))
    with pytest.raises(ValueError, match="held-out samples"):
        error_budget(prepared, [])
    with pytest.raises(ValueError, match="before convert_pt2e"):
        error_budget(convert_pt2e(prepared), _data(2, 1))
