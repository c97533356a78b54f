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
    "F.relu6_inplace": (Seq(fn=lambda x: F.relu6(x, inplace=True)), aten.relu6_.default),
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


@pytest.mark.parametrize("flipped", [(0,), (0, 1)], ids=["first", "all"])
def test_cat_of_inputs_made_by_ops_without_a_rule(strict, flipped):
    """Inputs produced by an op without a rule (flip) still share the cat's parameters;
    prepare_pt2e used to fail when no input came from a quantized op (ViT's class token + patches
    before transpose had a rule)."""
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 5, 1)

        def forward(self, x):
            parts = [self.a(x), self.b(x)]
            for i in flipped:
                parts[i] = parts[i].flip(-1)
            return torch.cat(parts, dim=1)

    _, gm, _ = quantize(Cat(), IMG, strict)
    cat = the(gm, aten.cat.default)
    params = {dq_params(a) for a in cat.args[0]}
    assert all(is_dq(a) for a in cat.args[0]) and len(params) == 1
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
    assert_weighted(gm, target)  # folded BN gives the op a quantized bias
    # and the quantized model still computes the float model's function
    with torch.no_grad():
        ref, out = model(*calibration[0]), gm(*calibration[0])
    sqnr = sqnr_db(ref, out)
    assert sqnr > 25, f"{name}: SQNR {sqnr:.1f} dB after folding"


# ------------------------------------------------------------------------------------------
# binary ops with constants and scalars, reductions (ops-binary)
# ------------------------------------------------------------------------------------------
def constant_input(gm, dq):
    """(int8 values, (scale, zero point, qmin, qmax, dtype)) of a dequantized constant."""
    assert is_dq(dq) and dq.args[0].op == "get_attr", dq.format_node()
    return getattr(gm, dq.args[0].target), dq_params(dq)


# fn, the op it is quantized as, the constant's position, the constant's value
SCALARS = {
    "x + 1.0": (lambda x: x + 1.0, aten.add.Tensor, 1, 1.0),
    "0.5 * x": (lambda x: 0.5 * x, aten.mul.Tensor, 1, 0.5),
    "2 * x": (lambda x: 2 * x, aten.mul.Tensor, 1, 2.0),
    "x - 0.5": (lambda x: x - 0.5, aten.sub.Tensor, 1, 0.5),
    "1 - x": (lambda x: 1 - x, aten.sub.Tensor, 0, 1.0),
    "x / 6": (lambda x: x / 6, aten.mul.Tensor, 1, 1 / 6),
    "x / -0.25": (lambda x: x / -0.25, aten.mul.Tensor, 1, -4.0),
    "x.add(3.0, alpha=2)": (lambda x: x.add(3.0, alpha=2), aten.add.Tensor, 1, 6.0),
}


@pytest.mark.parametrize("name", list(SCALARS))
def test_python_scalar_is_an_int8_constant(strict, name):
    """The scalar is an int8 constant with its own parameters: 127 (or -127) times |c| / 127."""
    fn, target, index, value = SCALARS[name]
    _, gm, calibration = quantize(Seq(fn=fn), VEC, strict)
    op = the(gm, target)
    q, (scale, zp, *rest) = constant_input(gm, input_dq(op, index))
    assert tuple(rest) == INT8_WEIGHT and zp == 0
    assert q.dtype == torch.int8 and q.shape == (1, 1)
    assert int(q.flatten()[0]) == (127 if value > 0 else -127)
    assert scale == pytest.approx(abs(value) / 127, rel=1e-6)
    assert float(q.flatten()[0]) * scale == pytest.approx(value, rel=1e-6)
    assert_act_params(dq_params(input_dq(op, 1 - index)))
    assert_act_params(q_params(output_q(op)))
    assert not nodes(gm, aten.div.Tensor) and not nodes(gm, aten.rsub.Scalar)
    with torch.no_grad():
        x = calibration[0][0]
        assert sqnr_db(fn(x), gm(x)) > 30


def test_division_by_a_constant_tensor_is_a_multiplication(strict):
    class Div(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("d", torch.tensor([[2.0, -4.0, 0.5, 8.0, 1.0, 1.0, 1.0, 1.0]]))

        def forward(self, x):
            return x / self.d

    _, gm, _ = quantize(Div(), VEC, strict)
    q, (scale, zp, *rest) = constant_input(gm, input_dq(the(gm, aten.mul.Tensor), 1))
    assert tuple(rest) == INT8_WEIGHT and zp == 0
    assert scale == pytest.approx(2.0 / 127, rel=1e-6)  # the largest reciprocal is 1 / 0.5
    assert q.flatten().tolist() == [32, -16, 127, 8, 64, 64, 64, 64]  # round(1/d / (2/127))


def test_division_by_an_activation_stays_a_quantized_division(strict):
    _, gm, _ = quantize(Seq(fn=lambda x: x / (torch.relu(x) + 1.0)), VEC, strict)
    div = the(gm, aten.div.Tensor)
    assert_act_params(dq_params(input_dq(div, 0)))
    assert_act_params(dq_params(input_dq(div, 1)))
    assert_act_params(q_params(output_q(div)))


@pytest.mark.parametrize("fn,target", [
    (lambda x: (x * 2) ** 2, aten.pow.Tensor_Scalar),
    (torch.square, aten.square.default),
])
def test_square_has_its_own_output_parameters(strict, fn, target):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 4, 1), fn=fn), IMG, strict)
    op = the(gm, target)
    x_scale, *_ = dq_params(input_dq(op))
    scale, zp, *rest = q_params(output_q(op))
    assert tuple(rest) == INT8_ACT
    assert zp == -128, "a square is never negative: its zero point sits at the bottom of int8"
    assert scale != x_scale


@pytest.mark.parametrize("fn,target", [(torch.maximum, aten.maximum.default),
                                       (torch.minimum, aten.minimum.default)])
def test_maximum_minimum_share_one_set_of_parameters(strict, fn, target):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return fn(self.a(x), self.b(x) * 3.0)

    _, gm, _ = quantize(Two(), IMG, strict)
    op = the(gm, target)
    a, b = dq_params(input_dq(op, 0)), dq_params(input_dq(op, 1))
    assert_act_params(a)
    assert a == b == q_params(output_q(op))


def test_maximum_with_a_constant_quantizes_it_in_the_activation_parameters(strict):
    class WithBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.register_buffer("floor", torch.tensor([0.5, -0.5, 1.0, 0.0]).reshape(1, 4, 1, 1))

        def forward(self, x):
            return torch.maximum(self.conv(x), self.floor)

    _, gm, _ = quantize(WithBuffer(), IMG, strict)
    op = the(gm, aten.maximum.default)
    x_params = dq_params(input_dq(op, 0))
    q, c_params = constant_input(gm, input_dq(op, 1))
    assert c_params == x_params == q_params(output_q(op))
    scale, zp = x_params[:2]
    expected = torch.round(torch.tensor([0.5, -0.5, 1.0, 0.0]) / scale) + zp
    assert q.flatten().tolist() == expected.tolist()


SHARED_REDUCTIONS = {
    "mean.default": (lambda x: x.mean(), aten.mean.default),
    "mean.dim channels": (lambda x: x.mean(1), aten.mean.dim),
    "mean.dim last keepdim": (lambda x: x.mean(-1, keepdim=True), aten.mean.dim),
    "amax": (lambda x: x.amax(dim=(2, 3)), aten.amax.default),
    "amin": (lambda x: x.amin(1, keepdim=True), aten.amin.default),
    "max.default": (lambda x: x.max(), aten.max.default),
    "min.default": (lambda x: x.min(), aten.min.default),
}


@pytest.mark.parametrize("name", list(SHARED_REDUCTIONS))
def test_reductions_share_input_and_output_parameters(strict, name):
    fn, target = SHARED_REDUCTIONS[name]
# unary activations and math functions (ops-unary)
# ------------------------------------------------------------------------------------------
# (fn, target, the output's zero point when the function's range makes it literal, else None)
UNARY_OWN = {
    "hardsigmoid": (F.hardsigmoid, aten.hardsigmoid.default, -128),
    "hardsigmoid_": (lambda x: F.hardsigmoid(torch.relu(x), inplace=True), aten.hardsigmoid_.default, -128),
    "gelu": (F.gelu, aten.gelu.default, None),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), aten.gelu.default, None),
    "gelu_": (lambda x: aten.gelu_(torch.relu(x)), aten.gelu_.default, None),  # no Tensor.gelu_
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), aten.leaky_relu.default, None),
    "leaky_relu_": (lambda x: F.leaky_relu_(torch.abs(x), 0.1), aten.leaky_relu_.default, -128),
    "silu": (F.silu, aten.silu.default, None),
    "silu_": (lambda x: F.silu(torch.abs(x), inplace=True), aten.silu_.default, -128),
    "elu": (F.elu, aten.elu.default, None),
    "elu_": (lambda x: F.elu_(torch.abs(x)), aten.elu_.default, -128),
    "exp": (torch.exp, aten.exp.default, -128),  # (0, e^max]: 0 is the bottom of the range
    "exp_": (lambda x: torch.abs(x).exp_(), aten.exp_.default, -128),
    "log": (lambda x: torch.log(torch.abs(x)), aten.log.default, None),
    "log_": (lambda x: torch.abs(x).log_(), aten.log_.default, None),
    "rsqrt": (lambda x: torch.rsqrt(torch.abs(x)), aten.rsqrt.default, -128),
    "rsqrt_": (lambda x: torch.abs(x).rsqrt_(), aten.rsqrt_.default, -128),
    "sqrt": (lambda x: torch.sqrt(torch.abs(x)), aten.sqrt.default, -128),
    "sqrt_": (lambda x: torch.abs(x).sqrt_(), aten.sqrt_.default, -128),
    "neg": (lambda x: -torch.relu(x), aten.neg.default, 127),  # [-max, 0]: 0 is the top
    "neg_": (lambda x: torch.relu(x).neg_(), aten.neg_.default, 127),
    # clamp ranges that an int8 relu op has: own output parameters, starting at 0 (or -1)
    "clamp_relu": (lambda x: torch.clamp(x, min=0), aten.clamp.default, -128),
    "clamp_relu6": (lambda x: torch.clamp(x, 0, 6), aten.clamp.default, -128),
    "clamp_0_1": (lambda x: torch.clamp(x, 0.0, 1.0), aten.clamp.default, -128),
    "clip_0_1": (lambda x: torch.clip(x, 0.0, 1.0), aten.clip.default, -128),
    "hardtanh_0_1": (lambda x: F.hardtanh(x, 0.0, 1.0), aten.hardtanh.default, -128),
}


@pytest.mark.parametrize("name", list(UNARY_OWN))
def test_unary_own_output_parameters(strict, name):
    fn, target, zp = UNARY_OWN[name]
    _, gm, _ = quantize(Seq(fn=fn), VEC, strict)
    op = the(gm, target)
    assert_act_params(dq_params(input_dq(op)))
    out = q_params(output_q(op))
    assert_act_params(out)
    if zp is not None:
        assert out[1] == zp
    if target in (aten.hardsigmoid.default, aten.hardsigmoid_.default, aten.clamp.default, aten.clip.default,
                  aten.hardtanh.default):
        assert out != dq_params(input_dq(op)), "a relu-like range gets its own parameters"


def test_hardsigmoid_range_is_at_most_0_to_1(strict):
    """hardsigmoid of inputs beyond [-3, 3]: the output range is [0, 1] (the histogram observer
    may trim a little off the top): zero point -128, scale just under 1/255."""
    x = (torch.linspace(-4, 4, 16).reshape(2, 8),)
    _, gm, _ = quantize(Seq(fn=F.hardsigmoid), x, strict, calibration=[x])
    scale, zp, *_ = q_params(output_q(the(gm, aten.hardsigmoid.default)))
    assert zp == -128 and 0.99 / 255 < scale <= 1 / 255 * (1 + 1e-6)


CLAMP_SHARED = {
    "clamp": (lambda x: torch.clamp(x, -0.5, 1.5), aten.clamp.default),
    "clamp_min": (lambda x: torch.clamp(x, min=-0.5), aten.clamp.default),
    "clamp_max": (lambda x: torch.clamp(x, max=0.5), aten.clamp.default),
    "clamp_": (lambda x: torch.clamp_(torch.abs(x), 0.25, 1.0), aten.clamp_.default),
    "clip": (lambda x: torch.clip(x, -1.5, 0.5), aten.clip.default),
    "clip_": (lambda x: torch.abs(x).clip_(0.25, 1.0), aten.clip_.default),
    "hardtanh": (lambda x: F.hardtanh(x, -0.5, 0.5), aten.hardtanh.default),
    "hardtanh_": (lambda x: F.hardtanh_(torch.abs(x), 0.5, 2.0), aten.hardtanh_.default),
}


@pytest.mark.parametrize("name", list(CLAMP_SHARED))
def test_clamp_without_relu_op_shares_input_parameters(strict, name):
    """Other bounds lower to MAXIMUM / MINIMUM, which do not requantize: output = input params."""
    fn, target = CLAMP_SHARED[name]
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 4, 1), fn=fn), IMG, strict)
# structural ops (ops-structure): transposed and 'same' convs, resizes, 1-D pools, data
# movement, multi-output splits, batch norm not after a conv
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,example,target", [
    (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), IMG, aten.conv_transpose2d.input),
    (lambda: nn.ConvTranspose1d(4, 6, 4, stride=2, padding=1), SEQ, aten.conv_transpose1d.default),
    (lambda: nn.Conv2d(4, 6, 4, padding="same"), IMG, aten.conv2d.padding),
    (lambda: nn.Conv1d(4, 6, 3, padding="same"), SEQ, aten.conv1d.padding),
])
def test_transposed_and_same_padding_convs_are_weighted(strict, make, example, target):
    _, gm, _ = quantize(Seq(make()), example, strict)
    op = assert_weighted(gm, target)
    assert_act_params(q_params(output_q(op)))


def test_conv_transpose_fuses_relu(strict):
    _, gm, _ = quantize(Seq(nn.ConvTranspose2d(4, 6, 2, stride=2), nn.ReLU()), IMG, strict)
    op = assert_weighted(gm, aten.conv_transpose2d.input)
    (user,) = op.users
    assert user.target == aten.relu.default
    assert q_params(output_q(user))[1:] == (-128, -128, 127, torch.int8)


def test_conv_transpose_per_channel_weights_on_axis_1(strict):
    _, gm, _ = quantize(Seq(nn.ConvTranspose2d(4, 6, 3, stride=2)), IMG, strict, per_channel=True)
    op = the(gm, aten.conv_transpose2d.input)
    x, w, b = op.args[:3]
    assert w.target == Q.dequantize_per_channel.default
    w_scales, w_zps, axis, qmin, qmax, dtype = w.args[1:7]
    assert (axis, qmin, qmax, dtype) == (1, -127, 127, torch.int8)  # weights [in, out, kH, kW]
    w_scales = getattr(gm, w_scales.target)
    assert w_scales.shape == (6,)
    b_scales = getattr(gm, b.args[1].target)
    torch.testing.assert_close(b_scales, w_scales * dq_params(x)[0], rtol=1e-6, atol=0)
    assert tuple(b.args[4:7]) == INT32_BIAS


def test_grouped_conv_transpose_keeps_per_tensor_weights(strict):
    """groups 2: the weight's axis 1 holds out / groups channels, the bias out: per tensor."""
    _, gm, _ = quantize(Seq(nn.ConvTranspose2d(4, 6, 3, groups=2)), IMG, strict, per_channel=True)
    assert_weighted(gm, aten.conv_transpose2d.input)


STRUCTURE_SHARED = {
    "upsample_nearest": (lambda x: F.interpolate(x, scale_factor=2), aten.upsample_nearest2d.vec, 2),
    "upsample_nearest_size": (lambda x: F.interpolate(x, size=(16, 12)), aten.upsample_nearest2d.vec, 2),
    "upsample_bilinear": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
                          aten.upsample_bilinear2d.vec, 2),
    "upsample_bilinear_align": (lambda x: F.interpolate(x, size=(15, 15), mode="bilinear", align_corners=True),
                                aten.upsample_bilinear2d.vec, 2),
    "max_pool1d": (lambda x: F.max_pool1d(x, 2), aten.max_pool1d.default, 1),
    "avg_pool1d": (lambda x: F.avg_pool1d(x, 3, 2, 1), aten.avg_pool1d.default, 1),
    "squeeze.dim": (lambda x: x.unsqueeze(0).squeeze(0), aten.squeeze.dim, 2),
    "squeeze.default": (lambda x: x[:, :, :1].squeeze(), aten.squeeze.default, 2),
    "squeeze.dims": (lambda x: x[:, :, :1].squeeze((0, 2)), aten.squeeze.dims, 2),
    "unsqueeze": (lambda x: x.unsqueeze(2), aten.unsqueeze.default, 1),
    "transpose": (lambda x: x.transpose(1, 2), aten.transpose.int, 1),
    "t": (lambda x: x.flatten(1).t(), aten.t.default, 1),
    "unflatten": (lambda x: x.unflatten(2, (4, 4)), aten.unflatten.int, 1),
    "expand": (lambda x: x[:, :, :1].expand(1, 4, 8, 8), aten.expand.default, 2),
    "select": (lambda x: x[:, :, 0], aten.select.int, 2),
}


@pytest.mark.parametrize("name", list(STRUCTURE_SHARED))
def test_structural_ops_share_input_and_output_parameters(strict, name):
    fn, target, dims = STRUCTURE_SHARED[name]
    first = nn.Conv2d(4, 4, 1) if dims == 2 else nn.Conv1d(4, 4, 1)
    _, gm, _ = quantize(Seq(first, fn=fn), IMG if dims == 2 else SEQ, strict)
    op = the(gm, target)
    assert_act_params(dq_params(input_dq(op)))
    assert_shared(op)


@pytest.mark.parametrize("fn,target", [(lambda x: torch.max(x, 1)[0], aten.max.dim),
                                       (lambda x: torch.min(x, -1, keepdim=True).values, aten.min.dim)])
def test_max_dim_values_share_the_input_parameters(strict, fn, target):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 4, 1), fn=fn), IMG, strict)
    op = the(gm, target)
    x_params = dq_params(input_dq(op))
    assert_act_params(x_params)
    (values,) = [u for u in op.users if u.args[1] == 0]
    assert q_params(output_q(values)) == x_params


@pytest.mark.parametrize("fn,target,count", [
    (lambda x: x.sum(dim=(2, 3)), aten.sum.dim_IntList, 64),
    (lambda x: x.sum(), aten.sum.default, 256),
])
def test_sum_has_its_own_output_parameters(strict, fn, target, count):
    """A sum's range is up to N times its input's: with the input's parameters it would saturate."""
    model = Seq(fn=lambda x: fn(x * 1.0))
    x = torch.rand(1, 4, 8, 8) + 0.5  # all positive: the sum's range is about N times the input's
    _, gm, _ = quantize(model, (x,), strict, calibration=[(x,)])
    op = the(gm, target)
    x_scale, *_ = dq_params(input_dq(op))
    scale, zp, *rest = q_params(output_q(op))
    assert tuple(rest) == INT8_ACT
    total = float(x.sum(dim=(2, 3)).max() if count == 64 else x.sum())
    assert scale > x_scale * count / 8
    assert (127 - zp) * scale >= total * 0.99, "the largest calibrated sum is not clipped"


def test_python_scalars_are_int8_constants_in_qat(strict):
    """QAT: the scalars become constants with fake-quantized int8 values as in PTQ."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    from neutronq import NeutronQuantizer, NeutronTargetSpec

    model = Seq(nn.Conv2d(4, 4, 1), fn=lambda x: 1 - x * 0.5)
    gm = torch.export.export(model, IMG, strict=strict).module()
    prepared = prepare_qat_pt2e(gm, NeutronQuantizer(NeutronTargetSpec("imxrt700"), is_qat=True))
    prepared(*IMG)
    gm = convert_pt2e(prepared)
    for target, index, value in ((aten.mul.Tensor, 1, 0.5), (aten.sub.Tensor, 0, 1.0)):
        op = the(gm, target)
        q, (scale, zp, *rest) = constant_input(gm, input_dq(op, index))
        assert tuple(rest) == INT8_WEIGHT and zp == 0
        assert q.flatten().tolist() == [127] and scale == pytest.approx(value / 127, rel=1e-6)
        assert_act_params(q_params(output_q(op)))


# ------------------------------------------------------------------------------------------
# attention: matmul of two activations (symmetric inputs), sub, rsqrt, transpose
# ------------------------------------------------------------------------------------------
INT8_SYMMETRIC = (0, -127, 127, torch.int8)  # zero point, qmin, qmax, dtype


class QK(nn.Module):
    """Two linears into q @ k^T over heads, a softmax, then @ v (attention's two matmuls)."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        q, k, v = (f(x).view(1, 4, 2, 4).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return a @ v


def _matmul_input_dq(op, index):
    """The dequantize that feeds matmul input ``index`` (directly, in convert_pt2e's graph)."""
    return input_dq(op, index)


def test_matmul_inputs_are_symmetric_at_their_producers(strict):
    _, gm, _ = quantize(QK(), (torch.randn(1, 4, 8),), strict)
    scores, out = nodes(gm, aten.matmul.default)
    # q and k: the linears' own outputs are symmetric, and the matmul reads them unchanged
    for i in (0, 1):
        _, zp, *rest = dq_params(_matmul_input_dq(scores, i))
        assert (zp, *rest) == INT8_SYMMETRIC
    linears = nodes(gm, aten.linear.default)
    for lin in linears:
        _, zp, *rest = q_params(output_q(lin))
        assert (zp, *rest) == INT8_SYMMETRIC, "a linear feeding a matmul is quantized symmetric"
    # the transposes between them share the linear's parameters (no requantization)
    for t in nodes(gm, aten.transpose.int):
        assert_shared(t)
    # the output has its own asymmetric parameters
    assert_act_params(q_params(output_q(scores)))
    assert_act_params(q_params(output_q(out)))


def test_softmax_into_matmul_is_requantized_to_a_fixed_symmetric_scale(strict):
    _, gm, _ = quantize(QK(), (torch.randn(1, 4, 8),), strict)
    softmax = the(gm, aten.softmax.int)
    assert q_params(output_q(softmax)) == (1 / 256, -128, -128, 127, torch.int8)
    out = nodes(gm, aten.matmul.default)[1]
    probs = input_dq(out, 0)
    # 1/256 -> 2/257: a multiplier 257/512 in [0.5, 1), one exact rounding in TFLite
    assert dq_params(probs) == (pytest.approx(2 / 257), *INT8_SYMMETRIC)
    requant = probs.args[0]
    assert is_q(requant) and is_dq(requant.args[0]) and dq_params(requant.args[0])[:2] == (1 / 256, -128)


@pytest.mark.parametrize("fn,target,shapes", [
    (torch.bmm, aten.bmm.default, [(2, 3, 4), (2, 4, 5)]),
    (torch.mm, aten.mm.default, [(3, 4), (4, 5)]),
    (torch.matmul, aten.matmul.default, [(2, 3, 4), (2, 4, 5)]),
])
def test_matmul_of_graph_inputs(strict, fn, target, shapes):
    class MatMul(nn.Module):
        def forward(self, a, b):
            return fn(a, b)

    _, gm, _ = quantize(MatMul(), tuple(torch.randn(s) for s in shapes), strict)
    op = the(gm, target)
    for i, p in enumerate(n for n in gm.graph.nodes if n.op == "placeholder"):
        assert len([u for u in p.users if is_q(u)]) == 1, "each graph input quantized once"
        _, zp, *rest = dq_params(input_dq(op, i))
        assert (zp, *rest) == INT8_SYMMETRIC
    assert_act_params(q_params(output_q(op)))


class FusedQKV(nn.Module):
    """One linear for q, k and v, split (or unbound) into heads: a ViT's attention."""

    def __init__(self, unbind: bool):
        super().__init__()
        self.qkv, self.unbind = nn.Linear(8, 24), unbind

    def forward(self, x):
        qkv = self.qkv(x).view(1, 4, 3, 2, 4).permute(2, 0, 3, 1, 4)  # [3, B, heads, L, d]
        q, k, v = qkv.unbind(0) if self.unbind else (t.squeeze(0) for t in qkv.split(1, 0))
        return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


@pytest.mark.parametrize("unbind", [True, False], ids=["unbind", "split"])
def test_matmul_inputs_from_a_split_qkv_are_symmetric(strict, unbind):
    """q, k and v are getitems of one split: the split's input edge (the qkv linear's value) is
    made symmetric, so every matmul operand has zero point 0."""
    _, gm, _ = quantize(FusedQKV(unbind), (torch.randn(1, 4, 8),), strict)
    matmuls = nodes(gm, aten.matmul.default)
    assert len(matmuls) == 2
    for op in matmuls:
        for i in (0, 1):
            _, zp, *rest = dq_params(input_dq(op, i))
            assert (zp, *rest) == INT8_SYMMETRIC, (op.name, i)


def test_matmul_of_a_graph_input_through_a_transpose(strict):
    class QKt(nn.Module):
        def forward(self, q, k):
            return q @ k.transpose(-2, -1)

    _, gm, _ = quantize(QKt(), (torch.randn(2, 3, 4), torch.randn(2, 3, 4)), strict)
    op = the(gm, aten.matmul.default)
    t = the(gm, aten.transpose.int)
    assert_shared(t)
    _, zp, *rest = q_params(output_q(t))
    assert (zp, *rest) == INT8_SYMMETRIC, "the graph input itself is quantized symmetric: no requantization"
    assert is_dq(op.args[1]) and op.args[1].args[0] is output_q(t)


@pytest.mark.parametrize("fn,target", [
    (lambda x: x - torch.relu(x), aten.sub.Tensor),
    (lambda x: torch.relu(x).sub_(x), aten.sub_.Tensor),
])
def test_sub_of_two_tensors_has_own_parameters(strict, fn, target):
    _, gm, _ = quantize(Seq(fn=fn), VEC, strict)
    op = the(gm, target)
    assert_act_params(dq_params(input_dq(op, 0)))
    assert_act_params(dq_params(input_dq(op, 1)))


def test_hardtanh_after_conv_with_other_range_is_not_fused(strict):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 6, 3), fn=lambda x: F.hardtanh(x, -2.0, 3.0)), IMG, strict)
    conv = the(gm, aten.conv2d.default)
    conv_out = q_params(output_q(conv))
    assert_act_params(conv_out)
    ht = the(gm, aten.hardtanh.default)
    assert dq_params(input_dq(ht)) == conv_out
    assert_shared(ht)


@pytest.mark.parametrize("slopes", [[0.25], [-0.3, 0.1, 0.6, 0.2, 0.0, -0.1, 0.4, 0.05]])
def test_prelu_slope_is_an_int8_weight(strict, slopes):
    prelu = nn.PReLU(len(slopes))
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor(slopes))
    _, gm, _ = quantize(Seq(prelu), VEC, strict)
    op = the(gm, aten.prelu.default)
    assert_act_params(dq_params(input_dq(op)))
    scale, zp, *rest = dq_params(input_dq(op, 1))
    assert (zp, *rest) == (0, -127, 127, torch.int8)
    assert scale == pytest.approx(max(abs(v) for v in slopes) / 127, rel=1e-6)
    assert_act_params(q_params(output_q(op)))


@pytest.mark.parametrize("fn,target,count", [
    (lambda x: torch.split(x, 2, dim=1), aten.split.Tensor, 2),
    (lambda x: torch.split(x, [1, 3], dim=1), aten.split_with_sizes.default, 2),
    (lambda x: torch.chunk(x, 2, dim=3), aten.chunk.default, 2),
    (lambda x: torch.unbind(x, dim=1), aten.unbind.int, 4),
])
def test_split_outputs_share_the_input_parameters(strict, fn, target, count):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 4, 1), fn=fn), IMG, strict)
    op = the(gm, target)
    params = dq_params(input_dq(op))
    assert_act_params(params)
    items = sorted(op.users, key=lambda u: u.args[1])
    assert [u.args[1] for u in items] == list(range(count))
    for item in items:
        assert q_params(output_q(item)) == params


def test_max_pool2d_with_indices_quantizes_the_values_only(strict):
    _, gm, _ = quantize(Seq(nn.Conv2d(4, 4, 1), fn=lambda x: F.max_pool2d(x, 2, return_indices=True)), IMG, strict)
    op = the(gm, aten.max_pool2d_with_indices.default)
    values, indices = sorted(op.users, key=lambda u: u.args[1])
    assert q_params(output_q(values)) == dq_params(input_dq(op))
    assert not any(is_q(u) for u in indices.users), "the int64 indices are not quantized"


def test_batch_norm_not_after_a_conv_becomes_a_depthwise_conv(strict):
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -0.25, 0.0, 1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 1.0]))
        bn.weight.copy_(torch.tensor([1.0, 0.5, -2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.0, 0.25, 0.5, -1.0]))
    model = AddThenBatchNorm(bn.eval())  # after an add: nothing to fold into
    _, gm, calibration = quantize(model, IMG, strict)
    assert not [n for n in gm.graph.nodes if "batch_norm" in str(n.target)]
    conv = assert_weighted(gm, aten.conv2d.default)
    assert conv.args[3:7] == ([1, 1], [0, 0], [1, 1], 4)  # stride, padding, dilation, groups = C
    w = conv.args[1]
    w_scale = dq_params(w)[0]
    w_int = getattr(gm, w.args[0].target)
    assert w_int.shape == (4, 1, 1, 1)
    # gamma / sqrt(var + eps): 0.5, 1, -2, 1 (eps 1e-5), on the int8 grid of max |.| / 127
    expected = torch.tensor([1.0, 0.5, -2.0, 1.0]) / torch.sqrt(torch.tensor([4.0, 0.25, 1.0, 1.0]) + 1e-5)
    assert w_scale == pytest.approx(float(expected.abs().max()) / 127, rel=1e-6)
    torch.testing.assert_close(w_int.reshape(-1).float() * w_scale, expected, atol=w_scale * 0.5001, rtol=0)
    b = conv.args[2]
    b_int = getattr(gm, b.args[0].target)
    shift = torch.tensor([0.0, 0.25, 0.5, -1.0]) - torch.tensor([0.5, -0.25, 0.0, 1.0]) * expected
    torch.testing.assert_close(b_int.float() * dq_params(b)[0], shift, atol=dq_params(b)[0], rtol=0)
    with torch.no_grad():
        x = calibration[0][0]
        ref, out = bn(x.abs() + x), gm(x)
    assert sqnr_db(ref, out) > 30


class AddThenBatchNorm(nn.Module):
    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        return self.bn(x.abs() + x)


def test_batch_norm1d_on_features_becomes_unsqueeze_conv1d_squeeze(strict):
    bn = nn.BatchNorm1d(8).eval()
    with torch.no_grad():
        bn.running_var.fill_(4.0)
    _, gm, _ = quantize(Seq(nn.Linear(8, 8), nn.ReLU(), bn), VEC, strict)
    assert not [n for n in gm.graph.nodes if "batch_norm" in str(n.target)]
    conv = assert_weighted(gm, aten.conv1d.default)
    assert conv.args[6] == 8
    assert the(gm, aten.unsqueeze.default) is not None and the(gm, aten.squeeze.dim) is not None


def test_cat_whose_inputs_come_from_unquantized_ops(strict):
    """A class token (a parameter, expanded) cat with tokens from an op without a rule: every
    input edge shares the first one's parameters (torchao needs that edge observed first)."""

    class ClassToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.cls = nn.Parameter(torch.randn(1, 1, 8))

        def forward(self, x):
            return torch.cat([self.cls.expand(x.shape[0], -1, -1), torch.sin(x)], dim=1)

    _, gm, _ = quantize(ClassToken(), (torch.randn(1, 4, 8),), strict)
    cat = the(gm, aten.cat.default)
    params = {dq_params(a) for a in cat.args[0]}
    assert len(params) == 1 and q_params(output_q(cat)) == params.pop()
