"""Per-layer fidelity and op placement, on small models with known answers."""

from __future__ import annotations

import copy
import math

import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec
from neutronq.metrics import sqnr_db, top1_agreement
from neutronq.report.layers import per_layer_fidelity
from neutronq.report.ops import node_macs


class ConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.bn = torch.nn.BatchNorm2d(8)
        # a BN far from identity: a float reference without BN folding would compare the conv's
        # pre-BN output with the int8 post-BN one and report a very low SQNR
        self.bn.running_mean.fill_(-1.0)
        self.bn.running_var.fill_(0.25)
        self.bn.weight.data.fill_(3.0)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _quantized(model, example):
    gm = torch.export.export(model.eval(), example).module()
    prepared = prepare_pt2e(copy.deepcopy(gm), NeutronQuantizer(NeutronTargetSpec("imxrt700")))
    g = torch.Generator().manual_seed(0)
    samples = [(torch.randn(example[0].shape, generator=g),) for _ in range(8)]
    for s in samples:
        prepared(*s)
    return gm, convert_pt2e(prepared), samples


def test_per_layer_fidelity_compares_like_with_like():
    gm, quantized, samples = _quantized(ConvBN(), (torch.randn(1, 3, 8, 8),))
    layers = per_layer_fidelity(gm, quantized, samples[:3])
    by_op = {l.op: l for l in layers}
    assert [l.op for l in layers] == ["conv2d", "relu", "mean", "linear"]
    assert by_op["conv2d"].module == "conv" and by_op["linear"].module == "fc"
    for l in layers:
        assert 20.0 < l.sqnr_db < 70.0, l  # 8-bit: tens of dB, not a pre-/post-BN mismatch
    assert layers[0].drop_db == 0.0  # nothing logged before the first layer
    # the drop at a layer is its input's SQNR minus its own
    assert math.isclose(by_op["relu"].drop_db, by_op["conv2d"].sqnr_db - by_op["relu"].sqnr_db)


def test_macs_of_conv_linear_and_depthwise():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 6, 3, padding=1)
            self.dw = torch.nn.Conv2d(6, 6, 5, padding=2, groups=6)
            self.fc = torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(self.dw(self.conv(x)).mean((2, 3)))

    ep = torch.export.export(M(), (torch.zeros(2, 4, 10, 10),))
    macs = {n.name: node_macs(n) for n in ep.graph.nodes if n.op == "call_function"}
    assert macs["conv2d"] == 2 * 6 * 10 * 10 * 4 * 9
    assert macs["conv2d_1"] == 2 * 6 * 10 * 10 * 25
    assert macs["linear"] == 2 * 3 * 6
    assert sum(macs.values()) == macs["conv2d"] + macs["conv2d_1"] + macs["linear"]


def test_metrics():
    ref = torch.tensor([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    assert sqnr_db(ref, ref) == math.inf
    assert math.isclose(sqnr_db(ref, ref * 1.1), 20.0, abs_tol=1e-4)  # noise = 0.1 x signal -> 20 dB
    assert top1_agreement(ref, torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])) == 0.5


def test_worst_layers_rank_by_the_error_each_adds():
    """The headline's layer is where accuracy is lost: a layer going from near-exact (140 dB) to
    very good (92 dB) loses more dB than one going from 52 to 46 dB, but adds almost no error."""
    from neutronq.report.layers import LayerFidelity, worst_layers

    def layer(name, before, after):
        return LayerFidelity(0, name, "relu", "", (1,), after, before - after)

    exact_to_good = layer("relu_1", 140.0, 92.0)
    lossy = layer("conv2d_3", 52.0, 46.0)
    from_exact = layer("conv2d", math.inf, 60.0)
    nothing = layer("view", 46.0, 46.0)
    ranked = worst_layers([exact_to_good, lossy, from_exact, nothing])
    assert [l.node for l in ranked] == ["conv2d_3", "conv2d", "relu_1"]
    assert lossy.added_noise == 10 ** -4.6 - 10 ** -5.2
    assert nothing.added_noise == 0.0 and "added_noise" in lossy.as_dict()
