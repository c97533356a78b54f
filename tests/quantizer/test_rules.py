"""Per-op quantization rules: Q/DQ placement and literal parameters, in both export modes.

Every value checked here is written out literally (ranges, zero points, fixed scales) or read
from the observed graph (input scales), never from neutronq's own rule tables.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import Q, dq_params, is_dq, is_q, nodes, q_params, quantize

from neutronq.metrics import sqnr_db

aten = torch.ops.aten
INT8_ACT = (-128, 127, torch.int8)
INT8_WEIGHT = (-127, 127, torch.int8)
# +-2^30: a saturated bias keeps its sign (float32 holds 2^30 exactly) and the accumulator its headroom
INT32_BIAS = (-(2**30), 2**30, torch.int32)


# ------------------------------------------------------------------------------------------
# helpers reading the converted graph
# ------------------------------------------------------------------------------------------
def the(gm, target):
    found = nodes(gm, target)
    assert len(found) == 1, f"expected one {target}, found {len(found)}:\n{gm.graph}"
    return found[0]


def input_dq(node, index=0):
    arg = node.args[index]
    assert is_dq(arg), f"input {index} of {node.name} is not dequantized: {arg.format_node()}"
    return arg


def output_q(node):
    users = list(node.users)
    assert len(users) == 1 and is_q(users[0]), (
        f"output of {node.name} is not quantized: {[u.format_node() for u in users]}"
    )
    return users[0]


def assert_act_params(params):
    scale, zp, qmin, qmax, dtype = params
    assert (qmin, qmax, dtype) == INT8_ACT
    assert scale > 0 and -128 <= zp <= 127


def assert_shared(node, index=0):
    """Output parameters equal the input's (no requantization through the op)."""
    assert q_params(output_q(node)) == dq_params(input_dq(node, index))


def assert_weighted(gm, target, has_bias=True):
    op = the(gm, target)
    x, w = input_dq(op, 0 if target != aten.addmm.default else 1), input_dq(
        op, 1 if target != aten.addmm.default else 2)
    x_scale, _, *x_rest = dq_params(x)
    assert tuple(x_rest) == INT8_ACT
    w_scale, w_zp, *w_rest = dq_params(w)
    assert w_zp == 0 and tuple(w_rest) == INT8_WEIGHT
    if has_bias:
        b = input_dq(op, 2 if target != aten.addmm.default else 0)
        b_scale, b_zp, *b_rest = dq_params(b)
        assert b_zp == 0 and tuple(b_rest) == INT32_BIAS
        assert b_scale == pytest.approx(x_scale * w_scale, rel=1e-6)
    return op


# ------------------------------------------------------------------------------------------
# tiny models
# ------------------------------------------------------------------------------------------
class Seq(nn.Module):
    def __init__(self, *mods, fn=None):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.fn = fn

    def forward(self, x):
        for m in self.mods:
            x = m(x)
        return self.fn(x) if self.fn is not None else x


IMG = (torch.randn(1, 4, 8, 8),)
SEQ = (torch.randn(1, 4, 16),)
VEC = (torch.randn(2, 8),)


# ------------------------------------------------------------------------------------------
# conv / linear / addmm and their fused activations
# ------------------------------------------------------------------------------------------
def test_conv2d(strict):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 6, 3)), IMG, strict)
    op = assert_weighted(gm, aten.conv2d.default)
    assert_act_params(q_params(output_q(op)))


def test_conv1d(strict):
    _, gm, _ = quantize(Seq(nn.Conv1d(4, 6, 3)), SEQ, strict)
    op = assert_weighted(gm, aten.conv1d.default)
    assert_act_params(q_params(output_q(op)))


def test_depthwise_conv2d_without_bias(strict):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 4, 3, groups=4, bias=False)), IMG, strict)
    assert_weighted(gm, aten.conv2d.default, has_bias=False)


def test_linear(strict):
    _, gm, _ = quantize(Seq(nn.Linear(8, 5)), VEC, strict)
    op = assert_weighted(gm, aten.linear.default)
    assert_act_params(q_params(output_q(op)))


class AddMM(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 5))
        self.b = nn.Parameter(torch.randn(5))

    def forward(self, x):
        return torch.addmm(self.b, x, self.w)


def test_addmm(strict):
    _, gm, _ = quantize(AddMM(), VEC, strict)
    op = assert_weighted(gm, aten.addmm.default)
    assert_act_params(q_params(output_q(op)))


FUSED = {
    "relu": (nn.ReLU(), aten.relu.default),
    "relu_inplace": (nn.ReLU(inplace=True), aten.relu_.default),
    "nn.ReLU6": (nn.ReLU6(), aten.hardtanh.default),
    "nn.ReLU6_inplace": (nn.ReLU6(inplace=True), aten.hardtanh_.default),
    "F.relu6": (Seq(fn=F.relu6), aten.relu6.default),
}


@pytest.mark.parametrize("name", list(FUSED))
@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_weighted_fuses_relu(strict, name, layer):
    act, act_target = FUSED[name]
    first = nn.Conv2d(4, 6, 3) if layer == "conv" else nn.Linear(8, 5)
    _, gm, _ = quantize(Seq(first, act), IMG if layer == "conv" else VEC, strict)
    op = assert_weighted(gm, aten.conv2d.default if layer == "conv" else aten.linear.default)
    (user,) = op.users
    assert user.target == act_target, "no quantize/dequantize may sit between the op and its activation"
    scale, zp, *rest = q_params(output_q(user))
    assert tuple(rest) == INT8_ACT
    # the unit's output range starts at 0: the zero point sits at the bottom of int8
    assert zp == -128


@pytest.mark.parametrize("fn,target,scale,zp", [
    (torch.sigmoid, aten.sigmoid.default, 1 / 256, -128),
    (torch.tanh, aten.tanh.default, 1 / 128, 0),
])
def test_sigmoid_and_tanh_after_conv_are_quantized_separately(strict, fn, target, scale, zp):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 6, 3), fn=fn), IMG, strict)
    conv = the(gm, aten.conv2d.default)
    assert_act_params(q_params(output_q(conv)))  # conv output quantized on its own
    act = the(gm, target)
    assert is_dq(act.args[0])
    assert q_params(output_q(act)) == (scale, zp, -128, 127, torch.int8)


# ------------------------------------------------------------------------------------------
# fixed output parameters
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn,target,scale,zp", [
    (torch.sigmoid, aten.sigmoid.default, 0.00390625, -128),
    (lambda x: torch.softmax(x, dim=1), aten.softmax.int, 0.00390625, -128),
    (torch.tanh, aten.tanh.default, 0.0078125, 0),
    (torch.tanh_, aten.tanh_.default, 0.0078125, 0),
])
def test_fixed_output_parameters(strict, fn, target, scale, zp):
    _, gm, _ = quantize(Seq(fn=lambda x: fn(x * 1.0)), VEC, strict)
    op = the(gm, target)
    assert_act_params(dq_params(input_dq(op)))
    assert q_params(output_q(op)) == (scale, zp, -128, 127, torch.int8)


# ------------------------------------------------------------------------------------------
# ops that share input and output parameters
# ------------------------------------------------------------------------------------------
SHARED = {
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), aten.max_pool2d.default, IMG),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), aten.avg_pool2d.default, IMG),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 1), aten.adaptive_avg_pool2d.default, IMG),
    "mean.dim": (lambda x: x.mean(dim=(2, 3), keepdim=True), aten.mean.dim, IMG),
    "pad": (lambda x: F.pad(x, (1, 1, 2, 0)), aten.pad.default, IMG),
    "reshape": (lambda x: x.reshape(1, 4, 64), aten.reshape.default, IMG),
    "view": (lambda x: x.view(1, 256), aten.view.default, IMG),
    "flatten": (lambda x: torch.flatten(x, 1), aten.flatten.using_ints, IMG),
    "permute": (lambda x: x.permute(0, 2, 3, 1), aten.permute.default, IMG),
    "slice": (lambda x: x[:, 1:3], aten.slice.Tensor, IMG),
    "dropout": (nn.Dropout(0.5), aten.dropout.default, IMG),
}


@pytest.mark.parametrize("name", list(SHARED))
def test_shared_input_output_parameters(strict, name):
    fn, target, example = SHARED[name]
    model = Seq(fn) if isinstance(fn, nn.Module) else Seq(fn=fn)
    # a conv first, so the op's input carries calibrated parameters of its own
    model = Seq(nn.Conv2d(4, 4, 1), model)
    _, gm, _ = quantize(model, example, strict)
    op = the(gm, target)
    assert_act_params(dq_params(input_dq(op)))
    assert_shared(op)


def test_cat_shares_one_set_of_parameters(strict):
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 5, 1)

        def forward(self, x):
            return torch.cat([self.a(x) * 3.0, self.b(x)], dim=1)

    _, gm, _ = quantize(Cat(), IMG, strict)
    cat = the(gm, aten.cat.default)
    params = {dq_params(a) for a in cat.args[0]}
    assert all(is_dq(a) for a in cat.args[0])
    assert len(params) == 1, f"cat inputs carry different parameters: {params}"
    assert q_params(output_q(cat)) == params.pop()


# ------------------------------------------------------------------------------------------
# element-wise ops with their own parameters
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn,target", [
    (lambda x: x + torch.relu(x), aten.add.Tensor),
    (lambda x: x * torch.relu(x), aten.mul.Tensor),
    (lambda x: torch.relu(x).add_(x), aten.add_.Tensor),  # resnet's in-place residual add
    (lambda x: torch.relu(x).mul_(x), aten.mul_.Tensor),
    (torch.abs, aten.abs.default),
    (F.relu, aten.relu.default),
    (lambda x: F.hardtanh(x, -0.5, 0.5), aten.hardtanh.default),
    (F.hardswish, aten.hardswish.default),
    (lambda x: F.hardswish(torch.relu(x), inplace=True), aten.hardswish_.default),
])
def test_elementwise(strict, fn, target):
    _, gm, _ = quantize(Seq(fn=fn), VEC, strict)
    op = the(gm, target)
    for a in op.args:
        if isinstance(a, torch.fx.Node):
            assert_act_params(dq_params(a))
    assert_act_params(q_params(output_q(op)))


def test_graph_input_is_quantized_once(strict):
    class TwoUsers(nn.Module):
        def forward(self, x):
            return torch.sigmoid(x), torch.tanh(x)

    _, gm, _ = quantize(TwoUsers(), VEC, strict)
    (x,) = [n for n in gm.graph.nodes if n.op == "placeholder"]
    qs = [u for u in x.users if is_q(u)]
    assert len(qs) == 1, "one quantize for the graph input, shared by its users"
    assert_act_params(q_params(qs[0]))


# ------------------------------------------------------------------------------------------
# per-channel option and observer defaults
# ------------------------------------------------------------------------------------------
def test_per_channel_conv_weights(strict):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 6, 3)), IMG, strict, per_channel=True)
    conv = the(gm, aten.conv2d.default)
    x, w, b = conv.args[:3]
    assert w.target == Q.dequantize_per_channel.default
    w_scales, w_zps, axis, qmin, qmax, dtype = w.args[1:7]
    assert (axis, qmin, qmax, dtype) == (0, -127, 127, torch.int8)
    w_scales = getattr(gm, w_scales.target)
    assert w_scales.shape == (6,)
    assert torch.all(getattr(gm, w_zps.target) == 0)
    assert b.target == Q.dequantize_per_channel.default
    b_scales = getattr(gm, b.args[1].target)
    torch.testing.assert_close(b_scales, w_scales * dq_params(x)[0], rtol=1e-6, atol=0)
    assert tuple(b.args[4:7]) == INT32_BIAS


def test_per_channel_dead_channel_keeps_its_bias(strict):
    """A channel with all-zero weights (as BN folding leaves a dead channel) and a large bias:
    its weight scale is floored (``bias_safe_weight_scale``) so the int32 bias is exact, not
    saturated, and the channel outputs its bias as the float model does."""
    model = Seq(nn.Conv2d(4, 6, 3))
    conv_module = model.mods[0]
    with torch.no_grad():
        conv_module.weight[2].zero_()
        conv_module.bias[2] = 3.0
    _, gm, calibration = quantize(model, IMG, strict, per_channel=True)
    conv = the(gm, aten.conv2d.default)
    w, b = conv.args[1:3]
    w_scales = getattr(gm, w.args[1].target)
    b_int = getattr(gm, b.args[0].target)
    b_scales = getattr(gm, b.args[1].target)
    assert w_scales[2] >= 3.0 / (2.0**-12 * 2**30) * (1 - 1e-6)
    assert abs(int(b_int[2])) < 2**30, "int32 bias keeps half of int32 for the accumulator"
    assert float(b_int[2]) * float(b_scales[2]) == pytest.approx(3.0, rel=1e-6)
    others = [c for c in range(6) if c != 2]
    amax = conv_module.weight.detach().abs().amax(dim=(1, 2, 3))
    torch.testing.assert_close(w_scales[others], amax[others] / 127, rtol=1e-6, atol=0,
                               msg="the floor binds only on the dead channel")
    with torch.no_grad():
        out = gm(*calibration[0])[0, 2]
    step = q_params(output_q(conv))[0]
    assert torch.allclose(out, torch.full_like(out, 3.0), atol=step)


def test_per_tensor_is_the_default(strict):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 6, 3)), IMG, strict)
    assert not nodes(gm, Q.dequantize_per_channel.default)


def test_histogram_eps_floors_the_scale(strict):
    """A constant-zero activation gets the histogram observer's eps (2^-12) as its scale."""
    _, gm, _ = quantize(Seq(fn=lambda x: torch.sigmoid(x * 0.0)), VEC, strict)
    mul = the(gm, aten.mul.Tensor)
    assert q_params(output_q(mul))[0] == pytest.approx(2.0**-12)


# ------------------------------------------------------------------------------------------
# batch norm folding (torchao folds conv-BN and linear-BN in prepare_pt2e)
# ------------------------------------------------------------------------------------------
BN_MODELS = {
    "conv2d": (lambda: Seq(nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6), nn.ReLU6()), IMG, aten.conv2d.default),
    "depthwise": (lambda: Seq(nn.Conv2d(4, 4, 3, groups=4, bias=False), nn.BatchNorm2d(4)), IMG,
                  aten.conv2d.default),
    "conv1d": (lambda: Seq(nn.Conv1d(4, 6, 3, bias=False), nn.BatchNorm1d(6), nn.ReLU()), SEQ,
               aten.conv1d.default),
    "linear": (lambda: Seq(nn.Linear(8, 5), nn.BatchNorm1d(5)), VEC, aten.linear.default),
}


@pytest.mark.parametrize("name", list(BN_MODELS))
def test_batch_norm_is_folded_for_ptq(strict, name):
    make, example, target = BN_MODELS[name]
    model = make()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
    model.eval()
    prepared, gm, calibration = quantize(model, example, strict)
    bn = [n for n in gm.graph.nodes if "batch_norm" in str(n.target)]
    assert not bn, f"batch norm left after PTQ: {bn}"
    op = assert_weighted(gm, target)  # folded BN gives the op a quantized bias
    # and the quantized model still computes the float model's function
    with torch.no_grad():
        ref, out = model(*calibration[0]), gm(*calibration[0])
    sqnr = sqnr_db(ref, out)
    assert sqnr > 25, f"{name}: SQNR {sqnr:.1f} dB after folding"
