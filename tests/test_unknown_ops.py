"""An op without a quantization rule is safe anywhere: between quantized ops, feeding a cat,
feeding an add, inside attention. The model quantizes (the op stays float, one warning names
it), lowers (the op on the CPU with its reason) and runs on the host, where it computes what the
quantized model computes; never a torchao assertion or a LoweringError."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import quantize
from pipelines import lower, run_lowered

from neutronq.metrics import sqnr_db
from neutronq.quantizer import UnquantizedOpWarning


@torch.library.custom_op("neutronq_test::wobble", mutates_args=())
def wobble(x: torch.Tensor) -> torch.Tensor:
    """A user's own op, opaque to every quantizer and partitioner."""
    return x + 0.25 * torch.sin(3.0 * x)


@wobble.register_fake
def _(x):
    return torch.empty_like(x)


class _LSTM(nn.Module):
    """An LSTM over the last dim's positions, keeping the shape [N, C, L]."""

    def __init__(self, channels: int):
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, batch_first=True)

    def forward(self, x):
        return self.lstm(x.transpose(1, 2))[0].transpose(1, 2)


# shape-preserving functions of an [N, C, L] tensor, each without a quantization rule: (function,
# its ATen op, and where the edge dialect decomposes it, the edge op that shows it on the CPU)
EDGE_FORM = {"softplus": "aten.log1p.default", "roll": "aten.index_select.default", "lstm": "aten.sigmoid.default",
             "logsumexp": "aten.log.default"}
UNKNOWN = {
    "erf": (torch.erf, "aten.erf.default"),
    "cumsum": (lambda x: torch.cumsum(x, -1), "aten.cumsum.default"),
    "topk": (lambda x: torch.topk(x, x.shape[-1], -1).values, "aten.topk.default"),
    "sort": (lambda x: torch.sort(x, -1).values, "aten.sort.default"),
    "where": (lambda x: torch.where(x > 0, x, x * x), "aten.where.self"),
    "sin": (torch.sin, "aten.sin.default"),
    "atan": (torch.atan, "aten.atan.default"),
    "floor": (torch.floor, "aten.floor.default"),
    "sign": (torch.sign, "aten.sign.default"),
    "softplus": (F.softplus, "aten.softplus.default"),
    "flip": (lambda x: torch.flip(x, [-1]), "aten.flip.default"),
    "roll": (lambda x: torch.roll(x, 1, -1), "aten.roll.default"),
    "logsumexp": (lambda x: x - torch.logsumexp(x, -1, keepdim=True), "aten.logsumexp.default"),
    "cummax": (lambda x: torch.cummax(x, -1).values, "aten.cummax.default"),
    "custom_op": (wobble, "neutronq_test.wobble.default"),
    "lstm": ("lstm", "aten.lstm.input"),
}


class Branch(nn.Module):
    """The unknown op ``fn`` at four places around quantized ops."""

    def __init__(self, fn):
        super().__init__()
        self.fn = _LSTM(8) if fn == "lstm" else fn
        self.a, self.b, self.c, self.d = (nn.Conv1d(4, 8, 3, padding=1) for _ in range(4))
        self.e = nn.Conv1d(8, 8, 1)

    def forward(self, x):
        fn = self.fn
        a = self.a(x)
        between = self.e(fn(torch.relu(a)))  # conv -> op -> conv
        joined = torch.cat([fn(self.c(x)), between], 1)  # feeding a cat
        added = fn(self.d(x)) + a  # feeding an add
        scores = joined.transpose(1, 2) @ joined  # [N, L, L]
        attended = torch.softmax(fn(scores), -1) @ joined.transpose(1, 2)  # inside attention
        return attended, added + self.b(x)


class Host(nn.Module):
    """One branch per unknown op (one model per group keeps the test to a few lowerings)."""

    def __init__(self, fns):
        super().__init__()
        self.branches = nn.ModuleList(Branch(fn) for fn in fns)

    def forward(self, x):
        return tuple(out for branch in self.branches for out in branch(x))


GROUPS = [list(UNKNOWN)[i : i + 4] for i in range(0, len(UNKNOWN), 4)]


@pytest.mark.parametrize("names", GROUPS, ids=["-".join(g) for g in GROUPS])
def test_unknown_ops_quantize_lower_and_run(names):
    model = Host([UNKNOWN[name][0] for name in names]).eval()
    example = (torch.randn(1, 4, 8),)  # L = 8: the LSTM also reads the [N, L, L] attention scores
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, converted, calibration = quantize(model, example)
    unquantized = [str(w.message) for w in caught if issubclass(w.category, UnquantizedOpWarning)]
    assert len(unquantized) == 1, unquantized  # one warning, naming every such op
    for name in names:
        assert UNKNOWN[name][1] in unquantized[0], (name, unquantized[0])

    edge, partitioner = lower(converted, example)
    cpu = {c.op for c in partitioner.cpu_ops}
    for name in names:
        target = EDGE_FORM.get(name, UNKNOWN[name][1])
        assert any(target.split(".")[1] in op for op in cpu), f"{target} should stay on the CPU: {cpu}"
    assert all(c.reason for c in partitioner.cpu_ops)
    assert partitioner.report.partitions, "the quantized convs around the ops still go to the NPU"

    for inputs in calibration[:2]:
        expected = converted(*inputs)
        got = run_lowered(edge, inputs)
        assert len(expected) == len(got)
        for e, g in zip(expected, got):
            assert e.shape == g.shape
            assert sqnr_db(e, g) > 25.0, "the host run departs from the quantized model"
