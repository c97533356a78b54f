"""The int32 bias is right for every weight scale, per tensor as per channel.

The bias scale is input scale x weight scale; a bias far larger than its weights (or a channel of
zero weights) would not fit int32 at that scale. NeutronQuantizer floors the weight scale where
the bias needs it (``bias_safe_weight_scale``), and says so naming the layer when that makes real
weights coarser. Whatever is left saturates at +-2^30 with the bias's sign: torchao quantizes a
float32 bias in float32, where the int32 limit 2^31 - 1 would round to 2^31 and wrap to -2^31.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import Q, is_dq, nodes, quantize

from neutronq.backend.scheme import BIAS_QMAX, BIAS_QMIN
from neutronq.quantizer.observers import BiasScaleFloorWarning

aten = torch.ops.aten


class ParallelConvs(nn.Module):
    """Twelve 1x1 convs side by side on one input, each with its own weight and bias scales."""

    def __init__(self, rng: np.random.Generator, count: int = 12):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(2, 3, 1) for _ in range(count))
        with torch.no_grad():
            for conv in self.convs:
                w_mag = 10.0 ** rng.uniform(-9, 1)  # from dead (1e-9) to large weights
                b_mag = 10.0 ** rng.uniform(-6, 9)  # from tiny to far beyond int32 at small scales
                weight = torch.from_numpy(rng.normal(size=(3, 2, 1, 1))).float() * w_mag
                if rng.random() < 0.25:
                    weight[int(rng.integers(3))] = 0.0  # a channel of zero weights
                if rng.random() < 0.15:
                    weight.zero_()
                conv.weight.copy_(weight)
                conv.bias.copy_(torch.from_numpy(rng.choice([-1.0, 1.0], 3) * b_mag * rng.uniform(0.5, 1, 3)).float())

    def forward(self, x):
        return torch.cat([c(x) for c in self.convs], dim=1)


def _biases(converted) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(int32 values, scales) of every conv's bias, in graph order."""
    found = []
    for conv in nodes(converted, aten.conv2d.default):
        dq = conv.args[2]
        assert is_dq(dq), conv.format_node()
        values = getattr(converted, dq.args[0].target)
        scale = dq.args[1]
        scale = getattr(converted, scale.target) if isinstance(scale, torch.fx.Node) else torch.tensor(scale)
        found.append((values, scale.to(torch.float64)))
    return found


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_biases_and_weight_scales_keep_their_value(per_channel, seed):
    """Property: over random biases (1e-6 .. 1e9, either sign) and weight scales (dead to large),
    every int32 bias dequantizes to its float bias within half a bias step: never saturated,
    never of the other sign, always inside the bias range."""
    rng = np.random.default_rng(seed)
    model = ParallelConvs(rng).eval()
    example = (torch.rand(1, 2, 4, 4),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiasScaleFloorWarning)
        _, converted, _ = quantize(model, example, calibration=[(torch.rand(1, 2, 4, 4),) for _ in range(4)],
                                   per_channel=per_channel)
    biases = _biases(converted)
    assert len(biases) == len(model.convs)
    for conv, (values, scale) in zip(model.convs, biases):
        assert values.dtype == torch.int32
        assert int(values.min()) >= BIAS_QMIN and int(values.max()) <= BIAS_QMAX
        assert (values.abs() < BIAS_QMAX).all(), f"saturated: {values.tolist()}"
        real = conv.bias.detach().to(torch.float64)
        got = values.to(torch.float64) * scale
        assert ((got - real).abs() <= scale * 0.5 * (1 + 1e-6) + real.abs() * 1e-6).all(), \
            f"bias {real.tolist()} became {got.tolist()} (scale {scale.tolist()})"
        assert (torch.sign(got) * torch.sign(real) >= 0).all()


def test_saturation_keeps_the_sign_for_every_magnitude():
    """Property: torchao's int32 quantization with the quantizer's bias range never flips a sign
    (the old range, +-(2^31 - 1), wrapped a positive overflow to -2^31)."""
    rng = np.random.default_rng(0)
    values = torch.from_numpy(rng.choice([-1.0, 1.0], 2000) * 10.0 ** rng.uniform(-10, 38, 2000)).float()
    for scale in 10.0 ** rng.uniform(-30, 0, 50):
        q = Q.quantize_per_tensor.default(values, float(scale), 0, BIAS_QMIN, BIAS_QMAX, torch.int32)
        assert int(q.min()) >= BIAS_QMIN and int(q.max()) <= BIAS_QMAX
        assert (torch.sign(q.double()) * torch.sign(values.double()) >= 0).all(), scale
        big = (values.double().abs() / scale) >= BIAS_QMAX * 1.001
        assert (q[big].abs() == BIAS_QMAX).all()


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_zero_weights_with_a_bias_give_the_bias(per_channel):
    """The measured case: weights all zero, bias 1.5: the int8 model gave 0 per tensor."""
    model = nn.Conv2d(3, 4, 1).eval()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.fill_(1.5)
    x = torch.rand(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BiasScaleFloorWarning)  # zero weights lose nothing: no warning
        _, converted, _ = quantize(model, (x,), calibration=[(torch.rand(1, 3, 8, 8),)], per_channel=per_channel)
    with torch.no_grad():
        assert torch.allclose(converted(x), model(x), atol=0.02)


@pytest.mark.parametrize("bias", [1e5, -1e5])
def test_bias_far_above_the_weights_floors_the_scale_with_a_warning_naming_the_layer(bias):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1)).eval()
    with torch.no_grad():
        model[0].bias.fill_(bias)
    x = torch.rand(1, 3, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, converted, _ = quantize(model, (x,), calibration=[(torch.rand(1, 3, 8, 8),)])
    ours = [str(w.message) for w in caught if issubclass(w.category, BiasScaleFloorWarning)]
    assert len(ours) == 1 and ours[0].startswith("conv2d (0)"), ours
    assert "coarser" in ours[0]
    with torch.no_grad():
        ref, got = model(x), converted(x)
    assert ((got - ref).abs() / ref.abs()).max() < 1e-3
