"""FuseBatchNormForQATPass and qat_batch_norm: the float maths of a conv + BN unit in QAT."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from neutronq.aten_passes.fuse_batch_norm_for_qat import (
    FREEZE_BN_ATTR,
    TRAINING_ATTR,
    FuseBatchNormForQATPass,
    bn_weight_scale,
    qat_batch_norm,
)

aten = torch.ops.aten


def _bn(c=6):
    bn = nn.BatchNorm2d(c)
    g = torch.Generator().manual_seed(3)
    bn.running_mean.copy_(torch.randn(c, generator=g))
    bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    bn.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
    bn.bias.data.copy_(torch.randn(c, generator=g))
    return bn


@pytest.mark.parametrize("with_bias", [False, True])
def test_training_equals_conv_then_batch_norm(with_bias):
    """Without fake-quantize, the unit in training is exactly conv followed by BN in training."""
    conv, bn = nn.Conv2d(3, 6, 3, bias=with_bias), _bn()
    ref_bn = copy.deepcopy(bn).train()
    x = torch.randn(5, 3, 8, 8)
    scale = bn_weight_scale(bn.weight, bn.running_var, bn.eps, 4)
    y = F.conv2d(x, conv.weight * scale)
    out = qat_batch_norm(y, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                         0.1, bn.eps, True, False)
    torch.testing.assert_close(out, ref_bn(conv(x)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)


@pytest.mark.parametrize("training, freeze", [(False, False), (True, True)])
def test_eval_and_frozen_equal_the_folded_conv(training, freeze):
    conv, bn = nn.Conv2d(3, 6, 3, bias=True), _bn()
    ref = nn.Sequential(copy.deepcopy(conv), copy.deepcopy(bn)).eval()
    mean = bn.running_mean.clone()
    x = torch.randn(5, 3, 8, 8)
    y = F.conv2d(x, conv.weight * bn_weight_scale(bn.weight, bn.running_var, bn.eps, 4))
    out = qat_batch_norm(y, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                         0.1, bn.eps, training, freeze)
    torch.testing.assert_close(out, ref(x), rtol=1e-4, atol=1e-5)
    assert torch.equal(mean, bn.running_mean)


class ConvBnLinearBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6)
        self.fc, self.bn1 = nn.Linear(6, 4), nn.BatchNorm1d(4)
        self.fc3, self.bn3 = nn.Linear(6, 6), nn.BatchNorm1d(2)  # BN over L of (N, L, C): not fused

    def forward(self, x):
        y = self.bn(self.conv(x)).mean((2, 3))
        z = self.bn3(self.fc3(y.reshape(-1, 2, 3).repeat(1, 1, 2)))
        return self.bn1(self.fc(y)), z


def test_pass_rewrites_conv_and_2d_linear_units(strict):
    model = ConvBnLinearBn().eval()
    gm = torch.export.export(model, (torch.randn(2, 3, 8, 8),), strict=strict).module()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = gm(x)
    gm = FuseBatchNormForQATPass()(gm)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(qat_batch_norm) == 2
    assert targets.count(aten.batch_norm.default) == 1  # the (N, L, C) one
    assert getattr(gm, TRAINING_ATTR) is False and getattr(gm, FREEZE_BN_ATTR) is False
    with torch.no_grad():
        out = gm(x)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert any(n.op == "call_module" and n.target == "_guards_fn" for n in gm.graph.nodes)
