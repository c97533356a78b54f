"""Per-op: the host-simulated lowered program against the convert_pt2e model (the independent
reference), within one quantization step on at least 99 % of output elements."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import calibration_set
from runtime_helpers import delegate_count, fraction_within_one_step, output_scales, quantize_and_lower
from neutronq.runtime import load_program


class Op(torch.nn.Module):
    """A tiny model around one op: ``fn(self, *inputs)``; a conv in front gives quantized inputs."""

    def __init__(self, fn, conv_in: int = 0):
        super().__init__()
        self.fn = fn
        self.conv = torch.nn.Conv2d(conv_in, conv_in, 1) if conv_in else None

    def forward(self, *xs):
        if self.conv is not None:
            xs = (self.conv(xs[0]),) + xs[1:]
        return self.fn(self, *xs)


def _linear(m, x):
    if not hasattr(m, "fc"):
        raise AssertionError("set in CASES")
    return m.fc(x)


CASES = {
    "conv2d": (lambda: _with(Op(lambda m, x: m.c(x)), c=torch.nn.Conv2d(3, 8, 3, padding=1)), [(1, 3, 12, 12)]),
    "conv2d_relu_stride2": (lambda: _with(Op(lambda m, x: F.relu(m.c(x))), c=torch.nn.Conv2d(4, 8, 3, stride=2)), [(1, 4, 13, 13)]),
    "depthwise_relu6": (lambda: _with(Op(lambda m, x: F.relu6(m.c(x))), c=torch.nn.Conv2d(8, 8, 3, groups=8, padding=1)), [(1, 8, 10, 10)]),
    "conv1d": (lambda: _with(Op(lambda m, x: m.c(x)), c=torch.nn.Conv1d(4, 6, 3)), [(1, 4, 20)]),
    "linear": (lambda: _with(Op(lambda m, x: m.fc(x)), fc=torch.nn.Linear(16, 10)), [(1, 16)]),
    "add": (lambda: Op(lambda m, x, y: x + y), [(1, 4, 6, 6), (1, 4, 6, 6)]),
    "mul": (lambda: Op(lambda m, x, y: x * y), [(1, 4, 6, 6), (1, 4, 6, 6)]),
    "cat": (lambda: Op(lambda m, x, y: torch.cat([x, y], dim=1), conv_in=3), [(1, 3, 6, 6), (1, 2, 6, 6)]),
    "max_pool2d": (lambda: Op(lambda m, x: F.max_pool2d(x, 2), conv_in=4), [(1, 4, 8, 8)]),
    "avg_pool2d": (lambda: Op(lambda m, x: F.avg_pool2d(x, 2), conv_in=4), [(1, 4, 8, 8)]),
    "adaptive_avg_pool2d": (lambda: Op(lambda m, x: F.adaptive_avg_pool2d(x, 1), conv_in=4), [(1, 4, 7, 7)]),
    "mean": (lambda: Op(lambda m, x: x.mean(dim=(2, 3), keepdim=True), conv_in=4), [(1, 4, 7, 7)]),
    "softmax": (lambda: Op(lambda m, x: F.softmax(x, dim=-1)), [(1, 10)]),
    "sigmoid": (lambda: Op(lambda m, x: torch.sigmoid(x), conv_in=4), [(1, 4, 5, 5)]),
    "tanh": (lambda: Op(lambda m, x: torch.tanh(x), conv_in=4), [(1, 4, 5, 5)]),
    "abs": (lambda: Op(lambda m, x: torch.abs(x), conv_in=4), [(1, 4, 5, 5)]),
    "pad": (lambda: Op(lambda m, x: F.pad(x, (1, 2, 1, 0)), conv_in=4), [(1, 4, 5, 5)]),
    "permute_flatten": (lambda: Op(lambda m, x: x.permute(0, 2, 3, 1).flatten(1), conv_in=4), [(1, 4, 3, 3)]),
}


def _with(module: torch.nn.Module, **children) -> torch.nn.Module:
    for name, child in children.items():
        setattr(module, name, child)
    return module


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulated_op_matches_convert_pt2e(name):
    factory, shapes = CASES[name]
    example = tuple(torch.randn(s) for s in shapes)
    converted, calibration, edge = quantize_and_lower(factory(), example)
    assert delegate_count(edge) >= 1, f"{name}: nothing was delegated, the test would not reach LiteRT"
    program = load_program(edge)
    scale = output_scales(converted)[0]
    assert scale is not None
    # the calibration inputs and fresh draws from the same distribution
    for inputs in list(calibration) + calibration_set(example, count=4, seed=1):
        simulated, reference = program(*inputs), converted(*inputs)
        assert simulated.shape == reference.shape
        within = fraction_within_one_step(reference, simulated, scale)
        assert within >= 0.99, f"{name}: {100 * within:.2f} % of elements within one step"
        assert reference.unique().numel() > 1  # neither constant ...
