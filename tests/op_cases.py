"""The per-op test cases: one tiny model per op (and variant), the input shapes, and the op
registrations (``neutronq.lowering.ops.OPS`` names) it must put on the NPU. ``test_ops.py`` runs
each through quantize -> lower -> host run; ``test_op_table.py`` checks every registration has one.

Inputs and calibration data are standard normal times ``scale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Case:
    model: Callable[[], nn.Module]
    shapes: list
    scale: float = 1.0
    ops: tuple = ()  # registrations (neutronq.lowering.ops.OPS names) this case puts on the NPU


class Fn(nn.Module):
    """A module around a function, with an optional conv in front (so data movement has
    something to move that the NPU computed)."""

    def __init__(self, fn, conv_in: int = 0, conv_out: int = 0, **conv_kwargs):
        super().__init__()
        self.fn = fn
        self.conv = nn.Conv2d(conv_in, conv_out, 3, padding=1, **conv_kwargs) if conv_in else None

    def forward(self, *xs):
        if self.conv is not None:
            xs = (self.conv(xs[0]), *xs[1:])
        return self.fn(*xs)


def conv(cin, cout, *a, **k):
    return lambda: nn.Conv2d(cin, cout, *a, **k)


IMG = (1, 4, 8, 8)
CASES = {
    # conv family
    "conv2d": Case(conv(4, 8, 3), [IMG], ops=('conv',)),
    "conv2d_same_padding": Case(conv(4, 8, 3, padding=1), [IMG], ops=('conv',)),
    "conv2d_stride2_pad": Case(conv(4, 8, 3, stride=2, padding=1), [IMG], ops=('conv',)),
    "conv2d_dilation": Case(conv(4, 8, 3, dilation=2, padding=2), [IMG], ops=('conv',)),
    "conv2d_no_bias": Case(conv(4, 8, 1, bias=False), [IMG], ops=('conv',)),
    "conv2d_depthwise": Case(conv(4, 4, 3, padding=1, groups=4), [IMG], ops=('conv',)),
    "conv2d_relu_stride2_odd": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3, stride=2), nn.ReLU()), [(1, 4, 13, 13)], ops=('conv',)),
    "conv2d_depthwise_relu6": Case(lambda: nn.Sequential(nn.Conv2d(8, 8, 3, groups=8, padding=1), nn.ReLU6()),
                               [(1, 8, 10, 10)], ops=('conv',)),
    "conv2d_relu": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU()), [IMG], ops=('conv',)),
    "conv2d_relu_inplace": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(inplace=True)), [IMG], ops=('conv',)),
    "conv2d_relu6": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU6()), [IMG], ops=('conv',)),
    "conv2d_f_relu6": Case(lambda: Fn(F.relu6, 4, 8), [IMG], ops=('conv',)),
    "conv2d_hardtanh_n1_1": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Hardtanh()), [IMG], ops=('conv',)),
    "conv2d_hardtanh_inplace": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Hardtanh(0.0, 6.0, inplace=True)), [IMG], ops=('conv',)),
    "conv1d": Case(lambda: nn.Conv1d(4, 8, 3, padding=1), [(1, 4, 16)], ops=('conv',)),
    "conv1d_stride": Case(lambda: nn.Conv1d(4, 8, 5, stride=2), [(1, 4, 16)], ops=('conv',)),
    # fully connected
    "linear": Case(lambda: nn.Linear(16, 8), [(2, 16)], ops=('linear',)),
    "linear_no_bias": Case(lambda: nn.Linear(16, 8, bias=False), [(2, 16)], ops=('linear_no_bias',)),
    "linear_relu": Case(lambda: nn.Sequential(nn.Linear(16, 8), nn.ReLU()), [(2, 16)], ops=('linear',)),
    "linear_3d_input": Case(lambda: nn.Linear(16, 8), [(2, 3, 16)], ops=('linear_nd',)),
    "addmm": Case(lambda: Addmm(), [(2, 16)], ops=('linear',)),
    # element-wise
    "add": Case(lambda: Fn(torch.add), [IMG, IMG], ops=('add',)),
    "add_broadcast": Case(lambda: Fn(torch.add), [IMG, (1, 4, 1, 1)], ops=('add',)),
    "add_inplace": Case(lambda: Fn(lambda a, b: torch.relu(a).add_(b)), [IMG, IMG], ops=('add', 'relu')),
    "mul": Case(lambda: Fn(torch.mul), [IMG, IMG], ops=('mul',)),
    "abs": Case(lambda: Fn(torch.abs), [IMG], ops=('abs',)),
    "relu": Case(lambda: Fn(F.relu), [IMG], ops=('relu',)),
    "relu_": Case(lambda: Fn(torch.relu_), [IMG], ops=('relu',)),
    "hardtanh": Case(lambda: Fn(F.hardtanh), [IMG], 0.4, ops=('hardtanh',)),
    "hardtanh_": Case(lambda: Fn(lambda x: F.hardtanh_(x.abs())), [IMG], 0.4, ops=('hardtanh', 'abs')),
    "hardswish": Case(lambda: Fn(F.hardswish, 4, 8), [IMG], ops=("conv", "hardswish")),
    "hardswish_inplace": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Hardswish(inplace=True)), [IMG],
                              ops=("conv", "hardswish")),
    "sigmoid": Case(lambda: Fn(torch.sigmoid), [IMG], ops=('sigmoid',)),
    "tanh": Case(lambda: Fn(torch.tanh), [IMG], ops=('tanh',)),
    "tanh_": Case(lambda: Fn(lambda x: torch.tanh_(x.abs())), [IMG], ops=('tanh', 'abs')),
    "softmax": Case(lambda: Fn(lambda x: F.softmax(x, dim=1)), [(2, 10)], ops=('softmax',)),
    "softmax_channels_4d": Case(lambda: Fn(lambda x: F.softmax(x, dim=1)), [IMG], ops=('softmax',)),
    # pools and means
    "max_pool2d": Case(lambda: Fn(lambda x: F.max_pool2d(x, 2)), [IMG], ops=('max_pool2d',)),
    "max_pool2d_same": Case(lambda: Fn(lambda x: F.max_pool2d(x, 3, 1, 1)), [IMG], ops=('max_pool2d',)),
    "avg_pool2d": Case(lambda: Fn(lambda x: F.avg_pool2d(x, 2)), [IMG], ops=('avg_pool2d',)),
    "avg_pool2d_pad_count": Case(lambda: Fn(lambda x: F.avg_pool2d(x, 3, 2, 1)), [IMG], ops=('avg_pool2d',)),
    "avg_pool2d_pad_exclude": Case(lambda: Fn(lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)), [IMG], ops=('avg_pool2d',)),
    "adaptive_avg_pool2d": Case(lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 1)), [IMG], ops=('adaptive_avg_pool2d',)),
    "adaptive_avg_pool2d_2x2": Case(lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 2)), [IMG], ops=('adaptive_avg_pool2d',)),
    "adaptive_avg_pool2d_7x7": Case(lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 1), 4, 4), [(1, 4, 7, 7)], ops=('conv', 'adaptive_avg_pool2d')),
    "mean_dim_keepdim": Case(lambda: Fn(lambda x: x.mean(dim=(2, 3), keepdim=True)), [IMG], ops=('mean',)),
    "mean_dim": Case(lambda: Fn(lambda x: x.mean(dim=(2, 3))), [IMG], ops=('mean',)),
    "mean_dim_channels": Case(lambda: Fn(lambda x: x.mean(dim=1)), [IMG], ops=('mean',)),
    # data movement, after a conv so the partition computes something
    "view": Case(lambda: Fn(lambda x: x.view(1, 8, 64), 4, 8), [IMG], ops=('conv', 'view')),
    "reshape": Case(lambda: Fn(lambda x: x.reshape(1, 16, 4, 8), 4, 8), [IMG], ops=('conv', 'view')),
    "flatten": Case(lambda: Fn(lambda x: torch.flatten(x, 1), 4, 8), [IMG], ops=('conv', 'view')),
    "permute": Case(lambda: Fn(lambda x: x.permute(0, 2, 3, 1), 4, 8), [IMG], ops=('conv', 'permute')),
    "permute_hw": Case(lambda: Fn(lambda x: x.permute(0, 1, 3, 2), 4, 8), [IMG], ops=('conv', 'permute')),
    "permute_flatten": Case(lambda: Fn(lambda x: x.permute(0, 2, 3, 1).flatten(1), 4, 4), [(1, 4, 3, 3)], ops=('conv', 'permute')),
    "slice": Case(lambda: Fn(lambda x: x[:, 2:6], 4, 8), [IMG], ops=('conv', 'slice')),
    "slice_hw_step": Case(lambda: Fn(lambda x: x[:, :, 1:7:2], 4, 8), [IMG], ops=('conv', 'slice')),
    "cat": Case(lambda: Fn(lambda x, y: torch.cat([x, y], 1)), [IMG, IMG], ops=('cat',)),
    "cat_width": Case(lambda: Fn(lambda x, y: torch.cat([x, y], 3)), [IMG, IMG], ops=('cat',)),
    "cat_after_conv": Case(lambda: Fn(lambda x, y: torch.cat([x, y], 1), 3, 3), [(1, 3, 6, 6), (1, 2, 6, 6)], ops=('conv', 'cat')),
    "pad": Case(lambda: Fn(lambda x: F.pad(x, (1, 2, 0, 1)), 4, 8), [IMG], ops=('conv', 'pad')),
    "dropout": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Dropout(0.5)), [IMG], ops=("conv", "identity")),
    "classifier": Case(lambda: Classifier(), [IMG], ops=('conv', 'max_pool2d', 'linear', 'softmax')),
    # --- attention: matmul of activations, softmax over the last dim, sub, rsqrt, layer norm ------
    "bmm": Case(lambda: Fn(torch.bmm), [(2, 8, 16), (2, 16, 8)], ops=("bmm",)),
    "matmul_3d": Case(lambda: Fn(torch.matmul), [(2, 8, 16), (2, 16, 8)], ops=("bmm", "expand")),
    "matmul_4d_q_kT": Case(lambda: Fn(lambda q, k: q @ k.transpose(-2, -1)), [(1, 2, 8, 16), (1, 2, 8, 16)],
                           ops=("bmm", "expand", "view", "permute")),
    "matmul_2d": Case(lambda: Fn(torch.matmul), [(8, 16), (16, 8)], ops=("linear_no_bias",)),
    "mm_x_yT": Case(lambda: Fn(lambda x, y: torch.mm(x, y.t())), [(8, 16), (8, 16)], ops=("linear_no_bias", "permute")),
    "attention": Case(lambda: Fn(lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v),
                      [(1, 2, 8, 16), (1, 2, 8, 16), (1, 2, 8, 16)], ops=("bmm", "softmax", "view")),
    "softmax_last_dim_4d": Case(lambda: Fn(lambda x: F.softmax(x, dim=-1)), [(1, 2, 8, 8)], ops=("softmax",)),
    "softmax_last_dim_3d": Case(lambda: Fn(lambda x: F.softmax(x, dim=-1)), [(2, 8, 8)], ops=("softmax",)),
    "sub": Case(lambda: Fn(torch.sub), [IMG, IMG], ops=("sub",)),
    "sub_broadcast": Case(lambda: Fn(torch.sub), [(1, 8, 16), (1, 8, 1)], ops=("sub",)),
    "rsqrt": Case(lambda: Fn(lambda x: torch.rsqrt(x.abs())), [IMG], ops=("rsqrt", "abs")),
    "layer_norm": Case(lambda: nn.LayerNorm(16), [(1, 8, 16)], ops=("mean", "sub", "mul", "add", "rsqrt")),
    "linear_3d_after_transpose": Case(lambda: LinearOnTokens(), [(1, 8, 4, 4)], ops=("conv", "linear_nd", "add")),
}


class LinearOnTokens(nn.Module):
    """A linear on [B, L, C] tokens made by flatten + transpose (not contiguous) and an add."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 1)
        self.pos = nn.Parameter(torch.randn(1, 16, 16) * 0.5)
        self.fc = nn.Linear(16, 8)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(2).transpose(1, 2) + self.pos)


class Addmm(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 8) * 0.2)
        self.b = nn.Parameter(torch.randn(8) * 0.1)

    def forward(self, x):
        return torch.addmm(self.b, x, self.w)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return F.softmax(self.fc(F.dropout(x.flatten(1), 0.2, self.training)), dim=-1)
