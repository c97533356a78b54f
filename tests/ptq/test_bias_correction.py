"""Empirical bias correction: lower mean output error on held-out data, same graph shape."""

import torch
from helpers import export
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec, calibrate_and_quantize
from neutronq.ptq.bias_correction import correct_biases


class Biased(torch.nn.Module):
    """Positive inputs into a depthwise conv whose channels span three decades: per-tensor int8
    rounds the small channels' weights coarsely, and with inputs of non-zero mean that rounding
    error becomes a systematic shift of the output mean (what bias correction removes)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.pw = torch.nn.Conv2d(3, 16, 1)
        self.dw = torch.nn.Conv2d(16, 16, 3, groups=16, padding=1)
        self.fc = torch.nn.Linear(16, 5)
        with torch.no_grad():
            self.pw.weight.copy_(torch.randn(16, 3, 1, 1, generator=g))
            gains = torch.logspace(-3, 0, 16).reshape(-1, 1, 1, 1)
            self.dw.weight.copy_((torch.rand(16, 1, 3, 3, generator=g) + 0.2) * gains)

    def forward(self, x):
        y = self.dw(torch.relu(self.pw(x)))
        return self.fc(y.mean(dim=(2, 3)))


def _data(count, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, 3, 8, 8, generator=g) + 0.5,) for _ in range(count)]


def _mean_error(model, converted, data):
    """Mean over output channels of |mean over data of (int8 - float)|: the output's bias."""
    with torch.no_grad():
        diff = torch.cat([converted(*x) - model(*x) for x in data])
    return float(diff.mean(0).abs().mean())


def test_bias_correction_lowers_mean_output_error_on_held_out_data():
    model = Biased().eval()
    calibration, held_out = _data(32, 0), _data(32, 1)
    errors = {}
    for corrected in (False, True):
        quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), bias_correction=corrected)
        gm = export(model, calibration[0]).module()
        errors[corrected] = _mean_error(model, calibrate_and_quantize(gm, calibration, quantizer), held_out)
    # each layer is corrected for its own rounding only (not for upstream error): measured 0.51x
    assert errors[True] < 0.6 * errors[False], errors


def test_correct_biases_by_hand_between_calibration_and_convert():
    """The seeds' own flow (prepare_pt2e, calibrate, convert_pt2e) with one call added."""
    model = Biased().eval()
    bias_before = model.dw.bias.detach().clone()
    calibration, held_out = _data(32, 0), _data(32, 1)
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"))
    prepared = prepare_pt2e(export(model, calibration[0]).module(), quantizer)
    with torch.no_grad():
        for x in calibration:
            prepared(*x)
    before = _mean_error(model, convert_pt2e(_copy(prepared)), held_out)
    corrections = correct_biases(prepared, calibration)
    assert set(corrections) == {"conv2d", "conv2d_1", "linear"}
    after_model = convert_pt2e(prepared)
    after = _mean_error(model, after_model, held_out)
    assert after < 0.6 * before  # measured 0.51x
    # the graph is the same: only bias values changed
    targets = [n.target for n in after_model.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.aten.conv2d.default) == 2
    # the user's float model is untouched
    torch.testing.assert_close(model.dw.bias.detach(), bias_before, rtol=0, atol=0)


def _copy(gm):
    import copy

    return copy.deepcopy(gm)
