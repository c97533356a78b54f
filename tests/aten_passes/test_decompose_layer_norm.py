"""LayerNorm decomposed before annotation: the same function in float, every piece quantized."""

import pytest
import torch
from helpers import export, nodes, quantize

from neutronq.aten_passes.decompose_layer_norm import DecomposeLayerNormPass

aten = torch.ops.aten


class Norm(torch.nn.Module):
    def __init__(self, shape, affine=True):
        super().__init__()
        self.norm = torch.nn.LayerNorm(shape, elementwise_affine=affine, eps=1e-3)
        if affine:
            with torch.no_grad():
                self.norm.weight.uniform_(0.5, 2.0)
                self.norm.bias.uniform_(-1.0, 1.0)

    def forward(self, x):
        return self.norm(x * 3.0 + 1.0)


@pytest.mark.parametrize("shape,affine", [(16, True), (16, False), ((4, 16), True)])
def test_same_function_in_float(strict, shape, affine):
    model = Norm(shape, affine).eval()
    x = torch.randn(2, 4, 16)
    gm = export(model, (x,), strict).module()
    gm = DecomposeLayerNormPass()(gm)
    assert not nodes(gm, aten.layer_norm.default)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert aten.rsqrt.default in targets and aten.sub.Tensor in targets
    if isinstance(shape, int):  # the variance by a 1/C linear
        assert targets.count(aten.mean.dim) == 1 and targets.count(aten.linear.default) == 1
    else:  # over several dims: by a mean
        assert targets.count(aten.mean.dim) == 2 and aten.linear.default not in targets
    torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)


def test_variance_by_mean_when_asked(strict):
    model = Norm(16).eval()
    x = torch.randn(2, 4, 16)
    gm = DecomposeLayerNormPass(variance="mean")(export(model, (x,), strict).module())
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(aten.mean.dim) == 2 and aten.linear.default not in targets
    torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)


def test_every_piece_is_quantized_by_default(strict):
    model = Norm(16).eval()
    _, gm, _ = quantize(model, (torch.randn(2, 4, 16),), strict)
    assert not nodes(gm, aten.layer_norm.default)
    for target in (aten.mean.dim, aten.sub.Tensor, aten.linear.default, aten.rsqrt.default, aten.add.Tensor,
                   aten.mul.Tensor):
        for op in nodes(gm, target):
            users = list(op.users)
            assert len(users) == 1 and "quantize_per_tensor" in str(users[0].target), op.format_node()


def test_kept_whole_when_asked(strict):
    _, gm, _ = quantize(Norm(16).eval(), (torch.randn(2, 4, 16),), strict, decompose_layer_norm=False)
    assert len(nodes(gm, aten.layer_norm.default)) == 1
