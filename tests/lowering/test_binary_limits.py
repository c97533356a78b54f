"""Binary ops and reductions outside the NPU's limits stay on the CPU, quantized, with the reason;
the program still computes what convert_pt2e's model does."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from helpers import calibration_set
from pipelines import quantize_and_lower, run_lowered

from neutronq.fx import node_op


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


IMG = (1, 4, 8, 8)
# model, input shapes, the edge op left on the CPU, words of its reason
CASES = {
    "div_by_activation": (lambda x, y: x / (y.abs() + 1.0), [IMG, IMG], "aten.div.Tensor",
                          "division by an activation"),
    "add_both_broadcast": (torch.add, [(1, 4, 1, 8), (1, 4, 8, 1)], "aten.add.Tensor",
                           "one input with the output's element count"),
    "maximum_both_broadcast": (torch.maximum, [(1, 4, 1, 8), (1, 4, 8, 1)], "aten.maximum.default",
                               "one input with the output's element count"),
    "sub_alpha": (lambda x, y: torch.sub(x, y, alpha=2), [IMG, IMG], "aten.sub.Tensor", "alpha 2"),
    "pow_3": (lambda x: x ** 3, [IMG], "aten.pow.Tensor_Scalar", "only exponent 2"),
    # (values, indices) both used: the node's output is then no single int8 tensor, which the
    # partitioner checks before the limits ("indices are used")
    "max_dim_indices": (lambda x: tuple(torch.max(x, 1)), [IMG], "aten.max.dim", "indices are used"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_op_stays_on_the_cpu_with_its_reason(name):
    fn, shapes, op, words = CASES[name]
    example = tuple(torch.randn(s) for s in shapes)
    converted, edge, partitioner, calibration = quantize_and_lower(Fn(fn).eval(), example, False,
                                                                   calibration_set(example))
    cpu = [c for c in partitioner.cpu_ops if c.op == op]
    assert cpu and all(words in c.reason for c in cpu), partitioner.cpu_ops
    ep = edge.exported_program()
    assert any(n.op == "call_function" and node_op(n) == op for n in ep.graph.nodes)
    with torch.no_grad():
        ref = converted(*calibration[0])
    got = run_lowered(edge, calibration[0])
    ref = tuple(ref) if isinstance(ref, (tuple, list)) else (ref,)
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-5)
