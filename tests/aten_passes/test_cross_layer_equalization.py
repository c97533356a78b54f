"""Cross-layer equalization: float outputs unchanged, per-channel weight ranges narrowed."""

import pytest
import torch
from helpers import Q, export, nodes, quantize

from neutronq.aten_passes.cross_layer_equalization import CrossLayerEqualization, find_pairs
from neutronq.metrics import sqnr_db

aten = torch.ops.aten
# channel gains 10^-2 .. 10^2: a model whose per-channel weight ranges span four decades
GAINS = torch.logspace(-2, 2, 8)


def _imbalance(conv_a: torch.nn.Conv2d, conv_b: torch.nn.Conv2d, depthwise_b: bool) -> None:
    """Scale conv_a's output channels by GAINS and conv_b's inputs by 1 / GAINS (same function)."""
    with torch.no_grad():
        conv_a.weight.mul_(GAINS.reshape(-1, 1, 1, 1))
        conv_a.bias.mul_(GAINS)
        conv_b.weight.div_(GAINS.reshape(-1, 1, 1, 1) if depthwise_b else GAINS.reshape(1, -1, 1, 1))


class ReluChain(torch.nn.Module):
    """conv -> relu -> conv (exact pair) -> conv (exact pair, no activation)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 8, 1)
        self.c = torch.nn.Conv2d(8, 4, 1)
        _imbalance(self.a, self.b, depthwise_b=False)

    def forward(self, x):
        return self.c(self.b(torch.relu(self.a(x))))


class Relu6Depthwise(torch.nn.Module):
    """conv -> ReLU6 -> zero pad -> depthwise conv -> ReLU6 -> pointwise conv (EfficientNet-Lite)."""

    def __init__(self):
        super().__init__()
        self.expand = torch.nn.Conv2d(3, 8, 1)
        self.dw = torch.nn.Conv2d(8, 8, 3, groups=8)
        self.project = torch.nn.Conv2d(8, 4, 1)
        self.act = torch.nn.ReLU6()
        with torch.no_grad():  # depthwise channels with ranges over four decades
            self.dw.weight.mul_(GAINS.reshape(-1, 1, 1, 1))
            self.dw.bias.mul_(GAINS)
            self.project.weight.div_(GAINS.reshape(1, -1, 1, 1))

    def forward(self, x):
        y = self.act(self.expand(x))
        y = torch.nn.functional.pad(y, (1, 1, 1, 1))
        return self.project(self.act(self.dw(y)))


def _spread(r: torch.Tensor) -> float:
    """max / min of per-channel ranges."""
    return float(r.max() / r.min())


def _out_ranges(w):
    return w.abs().reshape(w.shape[0], -1).amax(1)


def _equalized(model, strict):
    example = (torch.randn(2, 3, 8, 8),)
    gm = export(model, example, strict).module()
    before = {n: p.detach().clone() for n, p in gm.named_parameters()}
    cle = CrossLayerEqualization()
    gm = cle(gm)
    return gm, cle, before


def test_relu_chain_outputs_unchanged_and_ranges_equalized(strict):
    model = ReluChain().eval()
    gm, cle, before = _equalized(model, strict)
    assert [p.kind for p in cle.pairs] == ["exact", "exact"]
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        got = gm(x[:2]), gm(x[2:])
    torch.testing.assert_close(torch.cat(got), expected, rtol=1e-5, atol=1e-5)
    w_a = dict(gm.named_parameters())["a.weight"]
    assert _spread(_out_ranges(before["a.weight"])) == pytest.approx(1e4, rel=0.3)
    assert _spread(_out_ranges(w_a)) < 10  # four decades down to less than one
    # after convergence each channel's range is the same in both layers of a pair
    w_b = dict(gm.named_parameters())["b.weight"]
    torch.testing.assert_close(_out_ranges(w_a), w_b.abs().amax(dim=(0, 2, 3)), rtol=0.05, atol=0)
    # the user's own model is untouched
    torch.testing.assert_close(model.a.weight, before["a.weight"])


def test_relu6_into_depthwise_gets_an_exact_scale_op(strict):
    model = Relu6Depthwise().eval()
    gm, cle, before = _equalized(model, strict)
    assert [(p.kind, p.conv2.target) for p in cle.pairs] == [("scale_op", aten.conv2d.default)]
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.cat([gm(x[:2]), gm(x[2:])]), model(x), rtol=1e-5, atol=1e-6)
    convs = nodes(gm, aten.conv2d.default)
    assert len(convs) == 4  # expand, the 1x1 depthwise scale, dw, project
    scale = convs[1]
    assert scale.args[0].target == aten.hardtanh.default and scale.args[6] == 8
    factors = getattr(gm, scale.args[1].target).reshape(-1)
    # snapped to k / 127 so that int8 weights hold them exactly
    torch.testing.assert_close(factors * 127, torch.round(factors * 127))
    assert float(factors.max()) == 1.0
    dw = dict(gm.named_parameters())["dw.weight"]
    assert _spread(_out_ranges(before["dw.weight"])) > 1000
    # the depthwise ranges' spread shrinks to about its square root
    assert _spread(_out_ranges(dw)) < 3 * _spread(_out_ranges(before["dw.weight"])) ** 0.5
    # ReLU6 stays ReLU6 (no relu replaces it)
    assert len(nodes(gm, aten.hardtanh.default)) == 2


def test_chains_that_cannot_be_equalized_are_left_alone():
    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(4, 4, 1)
            self.b = torch.nn.Conv2d(4, 4, 1)
            self.c = torch.nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.a(x)
            z = self.b(torch.sigmoid(y))  # no rule for sigmoid
            return self.c(torch.nn.functional.hardtanh(z, -1.0, 1.0)) + y  # y has two users

    gm = export(Residual(), (torch.randn(1, 4, 4, 4),)).module()
    assert find_pairs(gm) == []
    # a ReLU6 into a pointwise conv (not depthwise) is not given a scale op
    gm = export(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU6(), torch.nn.Conv2d(4, 4, 1)),
                (torch.randn(1, 3, 4, 4),)).module()
    assert find_pairs(gm) == []


def _weight_error(converted, float_model, x):
    with torch.no_grad():
        ref = float_model(x)
        out = converted(x)
    return sqnr_db(ref, out)


# measured gains: ReluChain about 20 dB (both weights equalized), Relu6Depthwise about 4 dB
# (only the depthwise side, to the square root of its spread, plus one more requantization)
@pytest.mark.parametrize("model_cls, min_gain_db", [(ReluChain, 6.0), (Relu6Depthwise, 3.0)])
def test_equalization_through_the_quantizer_improves_per_tensor_sqnr(model_cls, min_gain_db):
    model = model_cls().eval()
    example = (torch.randn(1, 3, 8, 8),)
    calibration = [(torch.randn(1, 3, 8, 8),) for _ in range(16)]
    held_out = torch.randn(1, 3, 8, 8)
    _, plain, _ = quantize(model, example, calibration=calibration)
    _, equalized, _ = quantize(model, example, calibration=calibration, equalization=True)
    # only standard ops: quantize / dequantize and aten
    for n in equalized.graph.nodes:
        if n.op == "call_function":
            assert n.target.namespace in ("aten", "quantized_decomposed"), n.format_node()
    # every conv (the inserted scale op too) has int8 input and weight
    for conv in nodes(equalized, aten.conv2d.default):
        assert conv.args[0].target == Q.dequantize_per_tensor.default
        assert conv.args[1].target == Q.dequantize_per_tensor.default
    gain = _weight_error(equalized, model, held_out) - _weight_error(plain, model, held_out)
    assert gain > min_gain_db
