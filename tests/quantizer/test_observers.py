"""Observers by name: ranges on known distributions (pinned), and per-module / per-op overrides."""

import pytest
import torch
from helpers import Q, nodes, quantize

from neutronq import NeutronQuantizer, NeutronTargetSpec
from neutronq.quantizer.specs import (
    ACTIVATION_OBSERVERS,
    PER_CHANNEL_WEIGHT_OBSERVERS,
    WEIGHT_OBSERVERS,
    QuantizationScheme,
)

ACT = dict(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine, eps=2**-12)
WEIGHT = dict(dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_tensor_symmetric)


def _gaussian():
    return torch.randn(100_000, generator=torch.Generator().manual_seed(0))


def _range(obs) -> tuple[float, float]:
    scale, zp = obs.calculate_qparams()
    return float((-128 - zp) * scale), float((127 - zp) * scale)


def _observe(name, data, batches=2):
    obs = ACTIVATION_OBSERVERS[name](**ACT)
    for chunk in data.chunk(batches):
        obs(chunk)
    return _range(obs)


# Gaussian N(0, 1), 100 000 samples (seed 0, two batches): observed min -4.3307, max 4.5752.
GAUSSIAN_RANGES = {
    "minmax": (-4.3307, 4.5752),  # the extremes (grid-aligned: zero point -4)
    "moving_average_minmax": (-4.3290, 4.5734),  # 1 % of the second batch's extremes mixed in
    "histogram": (-4.3362, 4.1045),  # torchao's L2 search clips the upper tail
    "percentile": (-3.8212, 3.7323),  # 0.01th / 99.99th percentiles, about +-3.72 sigma
    "mse": (-3.9213, 4.2082),  # least rounding + clipping error: about 4 sigma for 8 bits
    "auto": (-4.3362, 4.1045),  # the histogram's, until the choice after calibration replaces it
}


@pytest.mark.parametrize("name", sorted(GAUSSIAN_RANGES))
def test_activation_observer_range_on_gaussian(name):
    lo, hi = _observe(name, _gaussian())
    assert (lo, hi) == pytest.approx(GAUSSIAN_RANGES[name], abs=2e-3)


def test_every_registered_activation_observer_is_pinned():
    assert set(ACTIVATION_OBSERVERS) == set(GAUSSIAN_RANGES)


def test_percentile_ignores_a_rare_outlier_that_minmax_and_mse_keep():
    # 10 000 values uniform on [0, 1] and one at 100: the 99.99th percentile is about 1, read
    # on a 2048-bin histogram of [0, 100] (bin width 0.0488), so the range ends one bin above.
    data = torch.cat([torch.linspace(0, 1, 10_000), torch.tensor([100.0])])
    assert _observe("percentile", data, 1) == pytest.approx((0.0, 1.0254), abs=1e-3)
    assert _observe("minmax", data, 1) == pytest.approx((0.0, 100.0), abs=1e-3)
    # clipping the single outlier to 1 costs 99^2 = 9801 in squared error, more than the
    # rounding error of the whole range (10 000 * 0.392^2 / 12 = 128): MSE keeps it
    assert _observe("mse", data, 1) == pytest.approx((0.0, 100.0), abs=1e-3)


def test_percentile_value_is_configurable():
    obs = ACTIVATION_OBSERVERS["percentile"](percentile=99.0, **ACT)
    obs(torch.linspace(0, 1, 10_001))
    lo, hi = _range(obs)
    assert lo == pytest.approx(0.0, abs=1e-6)
    assert hi == pytest.approx(0.99, abs=1e-3)  # the bin holding the 99th percentile ends at 0.9902
    with pytest.raises(ValueError, match="percentile"):
        ACTIVATION_OBSERVERS["percentile"](percentile=30.0, **ACT)


def _weights():
    w = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)) * 0.1
    w[0, 0] = 2.0  # one outlier
    return w


def test_weight_observers_per_tensor():
    w = _weights()
    ranges = {}
    for name, cls in WEIGHT_OBSERVERS.items():
        obs = cls(**WEIGHT)
        obs(w)
        ranges[name] = float(obs.calculate_qparams()[0]) * 127
    assert ranges["minmax"] == pytest.approx(2.0, abs=1e-6)
    assert ranges["mse"] == pytest.approx(1.98, abs=1e-4)  # alpha = 0.99 of max |w|


def test_mse_weight_observer_clips_a_heavy_tail():
    # Laplace weights (heavy tails): the least-error threshold is well inside max |w|
    g = torch.Generator().manual_seed(1)
    u = torch.rand(200_000, generator=g) - 0.5
    w = -0.05 * torch.sign(u) * torch.log1p(-2 * u.abs())  # Laplace(0, 0.05) by inversion
    obs = WEIGHT_OBSERVERS["mse"](**WEIGHT)
    obs(w)
    t = float(obs.calculate_qparams()[0]) * 127
    assert float(w.abs().max()) == pytest.approx(0.6166, abs=1e-4)
    # 0.81 * max |w| = 9.99 b: the known optimum for 8-bit Laplace(b) is about 9.9 b
    assert t == pytest.approx(0.4994, abs=1e-4)


def test_per_channel_weight_observers():
    w = _weights()
    for name, cls in PER_CHANNEL_WEIGHT_OBSERVERS.items():
        obs = cls(**{**WEIGHT, "qscheme": torch.per_channel_symmetric, "ch_axis": 0})
        obs(w)
        t = obs.calculate_qparams()[0] * 127
        assert t.shape == (64,)
        # channel 0 holds the outlier; channels of 32 Gaussian values are not worth clipping
        assert float(t[0]) == pytest.approx(2.0, abs=1e-4), name
        assert t[1:] == pytest.approx(w[1:].abs().amax(1), rel=1e-5), name


def test_unknown_observer_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="percentile"):
        QuantizationScheme(activation_observer="kl")
    with pytest.raises(ValueError, match="mse"):
        QuantizationScheme(weight_observer="percentile")


# --------------------------------------------------------------------------------------------
# whole quantizer and overrides
# --------------------------------------------------------------------------------------------
class TwoConvs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.second = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU())

    def forward(self, x):
        return self.second(self.first(x))


def _prepared(strict, **quantizer_kwargs):
    """Prepared and calibrated, not converted (convert_pt2e replaces the observers in place)."""
    from helpers import calibration_set, export
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    example = (torch.randn(1, 3, 8, 8),)
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), **quantizer_kwargs)
    prepared = prepare_pt2e(export(TwoConvs(), example, strict).module(), quantizer)
    for inputs in calibration_set(example, 2):
        prepared(*inputs)
    return prepared


def _observer_types(prepared):
    """Observer class per consumer node: {conv node name: (input obs, weight obs)}. A weight
    observer with the bias-safe scale floor (``Floored...``, every conv with a bias, per tensor as
    per channel) is named by the observer it floors."""
    out = {}
    for conv in nodes(prepared, torch.ops.aten.conv2d.default):
        x, w = conv.args[:2]
        out[conv.name] = (type(getattr(prepared, x.target)).__name__,
                          type(getattr(prepared, w.target)).__name__.removeprefix("Floored"))
    return out


def test_whole_quantizer_observers(strict):
    prepared = _prepared(strict, activation_observer="mse", weight_observer="mse")
    types = _observer_types(prepared)
    assert types["conv2d"] == ("MSEObserver", "MSEWeightObserver")
    assert types["conv2d_1"] == ("MSEObserver", "MSEWeightObserver")
    _, converted, _ = quantize(TwoConvs(), (torch.randn(1, 3, 8, 8),), strict,
                               activation_observer="mse", weight_observer="mse")
    assert nodes(converted, Q.quantize_per_tensor.default)


def test_module_override(strict):
    prepared = _prepared(strict, overrides={"second": {"activation_observer": "percentile",
                                                       "weight_observer": "mse"}})
    types = _observer_types(prepared)
    assert types["conv2d"] == ("HistogramObserver", "MinMaxObserver")
    # the second conv's input is the first conv's output: quantized by the first conv's rule
    assert types["conv2d_1"][1] == "MSEWeightObserver"
    relu = nodes(prepared, torch.ops.aten.relu.default)[0]
    assert type(getattr(prepared, next(iter(relu.users)).target)).__name__ == "PercentileObserver"


def test_op_override_and_inner_module_wins(strict):
    overrides = {"aten.conv2d.default": {"per_channel": True},
                 "": {"weight_observer": "mse"}, "second.0": {"per_channel": False}}
    types = _observer_types(_prepared(strict, overrides=overrides))
    assert types["conv2d"][1] == "PerChannelMSEWeightObserver"
    assert types["conv2d_1"][1] == "MSEWeightObserver"
    _, converted, _ = quantize(TwoConvs(), (torch.randn(1, 3, 8, 8),), strict, overrides=overrides)
    first, second = nodes(converted, torch.ops.aten.conv2d.default)
    assert first.args[1].target == Q.dequantize_per_channel.default
    assert second.args[1].target == Q.dequantize_per_tensor.default


def test_override_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match="matched no quantized op.*'nothere'"):
        quantize(TwoConvs(), (torch.randn(1, 3, 8, 8),), overrides={"nothere": {"per_channel": True}})
    with pytest.raises(ValueError, match="can set only"):
        NeutronQuantizer(NeutronTargetSpec("imxrt700"), overrides={"first": {"is_qat": True}})
    with pytest.raises(ValueError, match="Unknown activation observer"):
        NeutronQuantizer(NeutronTargetSpec("imxrt700"), overrides={"first": {"activation_observer": "x"}})
