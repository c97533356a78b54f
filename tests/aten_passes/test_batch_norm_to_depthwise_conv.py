"""BatchNormToDepthwiseConvPass: an inference batch norm is rewritten as a depthwise 1x1 conv that
computes the same function; a training-mode one is left alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from neutronq.aten_passes.batch_norm_to_depthwise_conv import BatchNormToDepthwiseConvPass

aten = torch.ops.aten


class AbsBatchNorm(nn.Module):
    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        return self.bn(x.abs())


def _bn(bn):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1, generator=g)
        bn.running_var.uniform_(0.2, 3, generator=g)
        if bn.affine:
            bn.weight.uniform_(-2, 2, generator=g)
            bn.bias.uniform_(-1, 1, generator=g)
    return bn


def _targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("bn,shape,conv", [
    (nn.BatchNorm2d(5), (2, 5, 4, 4), aten.conv2d.default),
    (nn.BatchNorm2d(5, affine=False), (2, 5, 4, 4), aten.conv2d.default),
    (nn.BatchNorm1d(5), (2, 5, 7), aten.conv1d.default),
    (nn.BatchNorm1d(5), (3, 5), aten.conv1d.default),
])
def test_inference_batch_norm_becomes_the_same_depthwise_conv(strict, bn, shape, conv):
    model = AbsBatchNorm(_bn(bn)).eval()
    x = torch.randn(shape)
    gm = torch.export.export(model, (x,), strict=strict).module()
    gm = BatchNormToDepthwiseConvPass()(gm)
    targets = _targets(gm)
    assert not [t for t in targets if "batch_norm" in str(t)], targets
    (node,) = [n for n in gm.graph.nodes if n.op == "call_function" and n.target == conv]
    assert node.args[-1] == 5  # groups = channels
    assert tuple(node.meta["val"].shape) == (shape if len(shape) > 2 else (*shape, 1))
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)


def test_training_batch_norm_is_left_alone(strict):
    model = AbsBatchNorm(nn.BatchNorm2d(3)).train()
    gm = torch.export.export(model, (torch.randn(2, 3, 4, 4),), strict=strict).module()
    before = _targets(gm)
    assert _targets(BatchNormToDepthwiseConvPass()(gm)) == before
