"""QAT with NeutronQuantizer(is_qat=True): conv/linear + BN folded while training, the converted
model's scheme, and its agreement with the fake-quantized model; both export modes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from helpers import Q, dq_params, is_dq
from torchao.quantization.pt2e import (
    FakeQuantizeBase,
    disable_observer,
    move_exported_model_to_eval,
    move_exported_model_to_train,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
from torchao.quantization.pt2e.utils import _is_bn_node

from neutronq import NeutronQuantizer, NeutronTargetSpec, QuantizeFusedConvBnBiasAtenPass
from neutronq.aten_passes.fuse_batch_norm_for_qat import qat_batch_norm

aten = torch.ops.aten
CONVS = (aten.conv1d.default, aten.conv2d.default)
BN_TARGETS = (aten.batch_norm.default, aten._native_batch_norm_legit.default,
              aten._native_batch_norm_legit_no_training.default, qat_batch_norm)


class ConvBn(nn.Module):
    """conv (1d/2d, optional bias, optional depthwise) + BN + optional relu / relu6, then a head."""

    def __init__(self, dim=2, bias=False, act=None, depthwise=False, cin=4, cout=8):
        super().__init__()
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dim == 2 else (nn.Conv1d, nn.BatchNorm1d)
        if depthwise:
            cout = cin
        self.conv = conv(cin, cout, 3, padding=1, bias=bias, groups=cin if depthwise else 1)
        self.bn = bn(cout)
        self.act = {None: nn.Identity(), "relu": nn.ReLU(), "relu6": nn.ReLU6()}[act]
        self.dim = dim

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class LinearBn(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.fc = nn.Linear(12, 6, bias=bias)
        self.bn = nn.BatchNorm1d(6)

    def forward(self, x):
        return self.bn(self.fc(x)).relu()


CASES = {
    "conv_nobias_bn": (lambda: ConvBn(bias=False), (4, 8, 8)),
    "conv_bias_bn": (lambda: ConvBn(bias=True), (4, 8, 8)),
    "conv_nobias_bn_relu": (lambda: ConvBn(bias=False, act="relu"), (4, 8, 8)),
    "conv_bias_bn_relu6": (lambda: ConvBn(bias=True, act="relu6"), (4, 8, 8)),
    "depthwise_bn_relu": (lambda: ConvBn(depthwise=True, act="relu"), (4, 8, 8)),
    "conv1d_bn": (lambda: ConvBn(dim=1, act="relu"), (4, 16)),
    "linear_bn": (lambda: LinearBn(), (12,)),
    "linear_nobias_bn": (lambda: LinearBn(bias=False), (12,)),
}


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def qat_prepare(model, shape, strict, **kwargs):
    """The QAT guide's flow up to training: export with batch 1, prepare_qat_pt2e, to train."""
    _randomize_bn(model)
    gm = torch.export.export(model.eval(), (torch.randn(1, *shape),), strict=strict).module()
    prepared = prepare_qat_pt2e(gm, NeutronQuantizer(NeutronTargetSpec("imxrt700"), is_qat=True, **kwargs))
    return move_exported_model_to_train(prepared)


def train_steps(prepared, shape, steps=4, batch=5, lr=1e-2):
    opt = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        out = prepared(torch.randn(batch, *shape))
        (out - 0.5).pow(2).mean().backward()
        opt.step()


def run_qat(make, shape, strict, **kwargs):
    """(fake-quantized output, converted model after the bias pass, test inputs).

    Observers are disabled before the fake-quantized reference runs: enabled, they would move
    the scales with the very batch they then quantize."""
    prepared = qat_prepare(make(), shape, strict, **kwargs)
    train_steps(prepared, shape)
    prepared = move_exported_model_to_eval(prepared)
    prepared.apply(disable_observer)
    x = torch.randn(64, *shape)
    with torch.no_grad():
        ref = prepared(x)
    converted = convert_pt2e(prepared)
    result = QuantizeFusedConvBnBiasAtenPass(default_zero_bias=True)(converted)
    return ref, result.graph_module, x


def _calls(gm, targets):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in targets]


def _output_scale(gm) -> float:
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0][0]
    assert out.target == Q.dequantize_per_tensor.default, out.format_node()
    return float(out.args[1])


@pytest.mark.parametrize("case", list(CASES))
def test_converted_scheme_and_agreement(case, strict):
    make, shape = CASES[case]
    ref, quantized, x = run_qat(make, shape, strict)

    # no batch norm of any kind is left
    assert not _calls(quantized, BN_TARGETS), quantized.graph

    weighted = _calls(quantized, CONVS + (aten.linear.default,))
    assert weighted
    for op in weighted:
        x_dq, w_dq, b_dq = op.args[0], op.args[1], op.args[2]
        # per-tensor int8 weights, symmetric [-127, 127], stored as int8
        assert is_dq(w_dq) and dq_params(w_dq)[1:] == (0, -127, 127, torch.int8)
        w_int8 = getattr(quantized, w_dq.args[0].target)
        assert w_int8.dtype == torch.int8
        # int32 bias, scale = input scale x weight scale, zero point 0, +-2^30
        assert is_dq(b_dq), f"{op.name} has no quantized bias: {op.format_node()}"
        b_scale, b_zp, b_min, b_max, b_dtype = dq_params(b_dq)
        assert (b_zp, b_min, b_max, b_dtype) == (0, -(2**30), 2**30, torch.int32)
        assert b_scale == pytest.approx(dq_params(x_dq)[0] * dq_params(w_dq)[0], rel=1e-6)
        assert getattr(quantized, b_dq.args[0].target).dtype == torch.int32

    # the converted model computes what the fake-quantized model computed
    with torch.no_grad():
        got = quantized(x)
    step = _output_scale(quantized)
    within = ((got - ref).abs() <= step * 1.001).float().mean().item()
    assert within >= 0.99, f"only {within:.2%} of outputs within one step ({step:.3g})"


@pytest.mark.parametrize("case", ["conv_bias_bn_relu6", "depthwise_bn_relu"])
def test_per_channel_qat_gets_per_channel_int32_bias(case, strict):
    make, shape = CASES[case]
    ref, quantized, x = run_qat(make, shape, strict, per_channel=True)
    (conv,) = _calls(quantized, CONVS)
    w_dq, b_dq = conv.args[1], conv.args[2]
    assert w_dq.target == Q.dequantize_per_channel.default
    assert b_dq.target == Q.dequantize_per_channel.default and b_dq.args[-1] == torch.int32
    w_scale = getattr(quantized, w_dq.args[1].target)
    b_scale = getattr(quantized, b_dq.args[1].target)
    torch.testing.assert_close(b_scale, w_scale.float() * float(conv.args[0].args[1]))
    with torch.no_grad():
        diff = (quantized(x) - ref).abs()
    assert (diff <= _output_scale(quantized) * 1.001).float().mean() >= 0.99


def test_prepared_graph_has_no_torchao_batch_norm(strict):
    """The representation that keeps convert fast: torchao's conv-BN QAT fusion and fold
    (which re-export 96 pattern graphs) see no batch norm and return at once."""
    prepared = qat_prepare(ConvBn(act="relu"), (4, 8, 8), strict)
    assert not any(_is_bn_node(n) for n in prepared.graph.nodes)
    (bn,) = _calls(prepared, (qat_batch_norm,))
    (conv,) = _calls(prepared, CONVS)

    def is_fq(n):
        return n.op == "call_module" and isinstance(getattr(prepared, n.target), FakeQuantizeBase)

    # the weight fake-quantize sees the BN-scaled weights: w * gamma / sqrt(var + eps)
    w_fq = conv.args[1]
    assert is_fq(w_fq) and w_fq.args[0].target == aten.mul.Tensor
    assert w_fq.args[0].args[0].target == "conv.weight"
    # no quantization between conv, BN and relu; the unit's output is quantized after them
    assert list(conv.users) == [bn]
    (relu,) = bn.users
    assert relu.target in (aten.relu.default, aten.relu_.default)
    assert all(is_fq(u) for u in relu.users)


def test_qat_really_quantizes_while_training(strict):
    model = ConvBn(bias=False, act="relu")
    _randomize_bn(model)
    float_model = ConvBn(bias=False, act="relu")
    prepared = qat_prepare(model, (4, 8, 8), strict)
    fqs = [m for m in prepared.modules() if isinstance(m, FakeQuantizeBase)]
    assert len(fqs) >= 3  # input, weight, output
    assert all(int(fq.fake_quant_enabled[0]) == 1 and int(fq.observer_enabled[0]) == 1 for fq in fqs)

    def scales():
        return [fq.scale.clone() for fq in fqs]

    train_steps(prepared, (4, 8, 8), steps=1)
    before = scales()
    train_steps(prepared, (4, 8, 8), steps=3)
    after = scales()
    moved = sum(not torch.equal(a, b) for a, b in zip(before, after))
    assert moved >= 2, "fake-quantize scales did not follow training"

    # the fake-quantized forward is not the float one: outputs on the int8 grid
    prepared = move_exported_model_to_eval(prepared)
    x = torch.randn(8, 4, 8, 8)
    with torch.no_grad():
        out = prepared(x)
    out_fq = next(n for n in prepared.graph.nodes if n.op == "output").args[0][0]
    scale = float(getattr(prepared, out_fq.target).scale)
    zp = float(getattr(prepared, out_fq.target).zero_point)
    grid = out / scale + zp
    assert torch.allclose(grid, grid.round(), atol=1e-3)
    # the float model with the same trained parameters computes something else
    state = prepared.state_dict()
    float_model.load_state_dict({k: state[k] for k in float_model.state_dict() if k in state}, strict=False)
    with torch.no_grad():
        ref = float_model.eval()(x)
    assert (out - ref).abs().max() > scale / 4
    assert (out - ref).abs().mean() < 2 * scale  # ... but close on average: its int8 simulation


def test_bn_statistics_update_while_training(strict):
    prepared = qat_prepare(ConvBn(act="relu"), (4, 8, 8), strict)
    mean0 = prepared.bn.running_mean.clone()
    train_steps(prepared, (4, 8, 8), steps=1, lr=0.0)
    assert not torch.equal(mean0, prepared.bn.running_mean)


def test_train_and_eval_differ_only_by_bn_mode(strict):
    """In eval the unit uses the running statistics: the same input twice gives the same output,
    and running statistics do not move."""
    prepared = move_exported_model_to_eval(qat_prepare(ConvBn(act="relu"), (4, 8, 8), strict))
    prepared.apply(disable_observer)  # else the scales follow each batch
    mean0 = prepared.bn.running_mean.clone()
    x = torch.randn(5, 4, 8, 8)
    with torch.no_grad():
        a, b = prepared(x), prepared(x[:1])
    assert torch.equal(mean0, prepared.bn.running_mean)
    torch.testing.assert_close(a[:1], b)
