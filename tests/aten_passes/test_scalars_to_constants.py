"""ScalarsToConstantsPass: the Python scalars of add / sub / mul / rsub become constant tensors,
division by a constant a multiplication by its reciprocal; the graph computes the same."""

from __future__ import annotations

import numbers

import pytest
import torch
import torch.nn as nn

from neutronq.aten_passes.pass_manager import passes_before_annotation
from neutronq.aten_passes.scalars_to_constants import ScalarsToConstantsPass

aten = torch.ops.aten


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class Div(nn.Module):
    def __init__(self, divisor):
        super().__init__()
        self.register_buffer("d", torch.tensor(divisor))

    def forward(self, x):
        return x / self.d


def _run(model, strict, shape=(2, 3, 4)):
    x = torch.randn(shape)
    gm = torch.export.export(model.eval(), (x,), strict=strict).module()
    before = gm(x)
    gm = ScalarsToConstantsPass()(gm)
    return gm, x, before


def _calls(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)]


def _constant(gm, node):
    assert node.op == "get_attr", node.format_node()
    value = getattr(gm, node.target)
    assert torch.equal(node.meta["val"], value)
    return value


# fn, the op it becomes, the constant's position, its value
CASES = {
    "x + 1.0": (lambda x: x + 1.0, aten.add.Tensor, 1, 1.0),
    "x + 1 (int)": (lambda x: x + 1, aten.add.Tensor, 1, 1.0),
    "x.add(3.0, alpha=2)": (lambda x: x.add(3.0, alpha=2), aten.add.Tensor, 1, 6.0),
    "x - 0.5": (lambda x: x - 0.5, aten.sub.Tensor, 1, 0.5),
    "x.sub(1.0, alpha=0.5)": (lambda x: x.sub(1.0, alpha=0.5), aten.sub.Tensor, 1, 0.5),
    "0.5 * x": (lambda x: 0.5 * x, aten.mul.Tensor, 1, 0.5),
    "2 * x": (lambda x: 2 * x, aten.mul.Tensor, 1, 2.0),
    "1 - x": (lambda x: 1 - x, aten.sub.Tensor, 0, 1.0),
    "x / 6": (lambda x: x / 6, aten.mul.Tensor, 1, 1 / 6),
    "x / 0.25": (lambda x: x / 0.25, aten.mul.Tensor, 1, 4.0),
    "relu(x).mul_(3.0)": (lambda x: torch.relu(x).mul_(3.0), aten.mul_.Tensor, 1, 3.0),
    "relu(x).div_(4.0)": (lambda x: torch.relu(x).div_(4.0), aten.mul_.Tensor, 1, 0.25),
}


@pytest.mark.parametrize("name", list(CASES))
def test_scalar_becomes_a_constant(strict, name):
    fn, target, index, value = CASES[name]
    gm, x, before = _run(Fn(fn), strict)
    (op,) = [n for n in _calls(gm) if n.target not in (aten.relu.default,)]
    assert op.target == target
    assert not op.kwargs, "alpha is folded into the constant"
    const = _constant(gm, op.args[index])
    assert op.args[1 - index].op == "placeholder" or op.args[1 - index].target == aten.relu.default
    assert const.shape == (1, 1, 1) and const.dtype == torch.float32
    assert float(const) == pytest.approx(value, rel=1e-7)
    torch.testing.assert_close(gm(x), before, rtol=1e-6, atol=1e-6)
    assert not any(isinstance(a, numbers.Number) for n in _calls(gm) for a in n.args[1:])


def test_rsub_with_alpha_keeps_alpha_on_the_tensor(strict):
    gm, x, before = _run(Fn(lambda x: torch.rsub(x, 2.0, alpha=3)), strict)
    (op,) = _calls(gm)
    assert op.target == aten.sub.Tensor and op.kwargs == {"alpha": 3}
    assert float(_constant(gm, op.args[0])) == 2.0 and op.args[1].op == "placeholder"
    torch.testing.assert_close(gm(x), before)


def test_division_by_a_constant_tensor(strict):
    gm, x, before = _run(Div([2.0, -4.0, 0.5, 8.0]), strict, shape=(2, 3, 4))
    (op,) = _calls(gm)
    assert op.target == aten.mul.Tensor
    assert _constant(gm, op.args[1]).tolist() == [0.5, -0.25, 2.0, 0.125]
    torch.testing.assert_close(gm(x), before)


@pytest.mark.parametrize("model", [
    Div([2.0, 0.0, 1.0, 1.0]),  # a zero divisor: inf / nan as PyTorch computes them
    Fn(lambda x: x / 0.0),
    Fn(lambda x: x / (x.abs() + 1.0)),  # an activation
    Fn(lambda x: torch.div(x, 2.0, rounding_mode="floor")),
], ids=["zero_in_constant", "zero_scalar", "activation", "rounding_mode"])
def test_divisions_that_stay_divisions(strict, model):
    gm, x, before = _run(model, strict)
    assert [n for n in _calls(gm) if "div" in str(n.target)], gm.graph
    torch.testing.assert_close(gm(x), before, equal_nan=True)


def test_integer_tensors_are_left_alone(strict):
    gm, x, before = _run(Fn(lambda x: (x > 0).to(torch.int32) + 1), strict)
    (add,) = [n for n in _calls(gm) if n.target == aten.add.Tensor]
    assert add.args[1] == 1
    assert torch.equal(gm(x), before)


def test_the_pass_runs_in_both_flows():
    for is_qat in (False, True):
        assert any(isinstance(p, ScalarsToConstantsPass) for p in passes_before_annotation(is_qat))
