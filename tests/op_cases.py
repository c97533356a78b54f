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
SEQ = (1, 4, 16)
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
    "adaptive_avg_pool2d": Case(lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 1)), [IMG], ops=("mean",)),  # a mean at the edge
    "adaptive_avg_pool2d_2x2": Case(lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 2)), [IMG], ops=('adaptive_avg_pool2d',)),
    "adaptive_avg_pool2d_7x7": Case(lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 1), 4, 4), [(1, 4, 7, 7)], ops=("conv", "mean")),
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
    "cat_requantizes_a_fixed_output": Case(lambda: CatSigmoid(), [IMG], ops=("conv", "sigmoid", "cat")),
    "pad": Case(lambda: Fn(lambda x: F.pad(x, (1, 2, 0, 1)), 4, 8), [IMG], ops=('conv', 'pad')),
    "dropout": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Dropout(0.5)), [IMG], ops=("conv", "identity")),
    "classifier": Case(lambda: Classifier(), [IMG], ops=('conv', 'max_pool2d', 'linear', 'softmax')),
    # --- binary ops with constants and scalars, reductions (ops-binary) ---------------------------
    "add_scalar": Case(lambda: Fn(lambda x: x + 1.0), [IMG], ops=('add',)),
    "mul_scalar_left": Case(lambda: Fn(lambda x: 0.5 * x), [IMG], ops=('mul',)),
    "mul_int_scalar": Case(lambda: Fn(lambda x: 2 * x), [IMG], ops=('mul',)),
    "sub_scalar": Case(lambda: Fn(lambda x: x - 0.5), [IMG], ops=('sub',)),
    "rsub_scalar": Case(lambda: Fn(lambda x: 1 - x), [IMG], ops=('sub',)),
    "div_scalar": Case(lambda: Fn(lambda x: x / 6), [IMG], ops=('mul',)),
    "div_constant_tensor": Case(lambda: WithConstant(torch.div, [0.5, -2.0, 4.0, 1.5]), [IMG], ops=('mul',)),
    "add_constant_tensor": Case(lambda: WithConstant(torch.add, [0.5, -2.0, 4.0, 1.5]), [IMG], ops=('add',)),
    "sub_inplace_scalar": Case(lambda: Fn(lambda x: torch.relu(x).sub_(0.25)), [IMG], ops=('sub', 'relu')),
    "sub": Case(lambda: Fn(torch.sub), [IMG, IMG], ops=('sub',)),
    "sub_broadcast": Case(lambda: Fn(torch.sub), [(1, 4, 1, 8), IMG], ops=('sub',)),
    "pow_2": Case(lambda: Fn(lambda x: (x * 2) ** 2), [IMG], ops=('mul', 'square')),
    "square": Case(lambda: Fn(torch.square, 4, 8), [IMG], ops=('conv', 'square')),
    "maximum": Case(lambda: Fn(torch.maximum), [IMG, IMG], ops=('maximum',)),
    "maximum_broadcast": Case(lambda: Fn(torch.maximum), [IMG, (1, 4, 1, 1)], ops=('maximum',)),
    "minimum": Case(lambda: Fn(torch.minimum), [IMG, IMG], ops=('minimum',)),
    "minimum_constant": Case(lambda: WithConstant(torch.minimum, [0.5, -0.5, 1.0, 0.0]), [IMG], ops=('minimum',)),
    "mean_all": Case(lambda: Fn(lambda x: x.mean()), [IMG], ops=('mean',)),
    "mean_dim_last_keepdim": Case(lambda: Fn(lambda x: x.mean(-1, keepdim=True), 4, 8), [IMG], ops=('conv', 'mean')),
    "mean_dims_c_w": Case(lambda: Fn(lambda x: x.mean(dim=(1, 3))), [IMG], ops=('mean',)),
    # small reductions: test inputs are uniform over the calibrated range, so a sum (or max) over
    # many elements sits at the edge of the calibrated sums (maxima)
    "sum_dim": Case(lambda: Fn(lambda x: x.sum(dim=(2, 3))), [(1, 4, 3, 3)], ops=('sum',)),
    "sum_channels_keepdim": Case(lambda: Fn(lambda x: x.sum(1, keepdim=True), 4, 8), [IMG], ops=('conv', 'sum')),
    "sum_all": Case(lambda: Fn(lambda x: x.sum()), [(1, 2, 2, 2)], ops=("sum",)),
    "sum_then_add": Case(lambda: Fn(lambda x: x.sum(-1, keepdim=True) + x), [IMG], ops=("sum", "add")),
    "amax": Case(lambda: Fn(lambda x: x.amax(dim=(2, 3))), [IMG], ops=('reduce_max',)),
    "amin_keepdim": Case(lambda: Fn(lambda x: x.amin(1, keepdim=True), 4, 8), [IMG], ops=('conv', 'reduce_min')),
    "max_all": Case(lambda: Fn(lambda x: x.max()), [(1, 2, 2, 2)], ops=('reduce_max',)),
    "max_dim": Case(lambda: Fn(lambda x: torch.max(x, 1)[0], 4, 8), [IMG], ops=('conv', 'max_dim')),
    "min_dim_keepdim": Case(lambda: Fn(lambda x: torch.min(x, -1, keepdim=True).values), [IMG], ops=('max_dim',)),
    # YOLOv5's box decode: xy = sigmoid * 2 - 0.5, wh = (sigmoid * 2) ** 2, then cat
    "yolo_decode": Case(lambda: YoloDecode(), [IMG], ops=('conv', 'sigmoid', 'mul', 'sub', 'square', 'cat')),
    # unary activations and math functions (ops-unary); after a conv, alone, in place
    "conv2d_f_relu6_inplace": Case(lambda: Fn(lambda x: F.relu6(x, inplace=True), 4, 8), [IMG], ops=("conv",)),
    "hardtanh_range": Case(lambda: Fn(lambda x: F.hardtanh(x, -0.5, 1.5), 4, 8), [IMG], ops=("conv", "hardtanh")),
    "hardtanh_0_1": Case(lambda: Fn(lambda x: F.hardtanh(x, 0.0, 1.0)), [IMG], ops=("hardtanh",)),
    "clamp": Case(lambda: Fn(lambda x: torch.clamp(x, -0.5, 1.5)), [IMG], ops=("clamp",)),
    "clamp_after_conv": Case(lambda: Fn(lambda x: torch.clamp(x, -0.5, 0.25), 4, 8), [IMG], ops=("conv", "clamp")),
    "clamp_min": Case(lambda: Fn(lambda x: torch.clamp(x, min=-0.5)), [IMG], ops=("clamp",)),
    "clamp_max": Case(lambda: Fn(lambda x: torch.clamp(x, max=0.5)), [IMG], ops=("clamp",)),
    "clamp_relu": Case(lambda: Fn(lambda x: torch.clamp(x, min=0)), [IMG], ops=("clamp",)),
    "clamp_relu6": Case(lambda: Fn(lambda x: torch.clamp(x, 0, 6), 4, 8), [IMG], 4.0, ops=("conv", "clamp")),
    "clamp_0_1": Case(lambda: Fn(lambda x: torch.clamp(x, 0, 1)), [IMG], ops=("clamp",)),
    "clamp_n1_1": Case(lambda: Fn(lambda x: torch.clamp(x, -1, 1)), [IMG], 0.5, ops=("clamp",)),
    "clamp_": Case(lambda: Fn(lambda x: torch.clamp_(x.abs(), 0.25, 1.0)), [IMG], ops=("clamp", "abs")),
    "clip": Case(lambda: Fn(lambda x: torch.clip(x, -1.5, 0.5)), [IMG], ops=("clamp",)),
    "hardsigmoid": Case(lambda: Fn(F.hardsigmoid), [IMG], 3.0, ops=("hardsigmoid",)),
    "hardsigmoid_after_conv": Case(lambda: Fn(F.hardsigmoid, 4, 8), [IMG], 3.0, ops=("conv", "hardsigmoid")),
    "hardsigmoid_inplace": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Hardsigmoid(inplace=True)), [IMG], 3.0,
                                ops=("conv", "hardsigmoid")),
    "squeeze_excite": Case(lambda: SqueezeExcite(), [IMG], 2.0,
                           ops=("conv", "mean", "relu", "hardsigmoid", "mul")),
    "gelu": Case(lambda: Fn(F.gelu), [IMG], 2.0, ops=("gelu",)),
    "gelu_tanh_after_conv": Case(lambda: Fn(lambda x: F.gelu(x, approximate="tanh"), 4, 8), [IMG], ops=("conv", "gelu")),
    "gelu_linear": Case(lambda: nn.Sequential(nn.Linear(16, 32), nn.GELU()), [(2, 16)], ops=("linear", "gelu")),
    "leaky_relu": Case(lambda: Fn(lambda x: F.leaky_relu(x, 0.1)), [IMG], ops=("leaky_relu",)),
    "leaky_relu_after_conv": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.LeakyReLU(0.2)), [IMG],
                                  ops=("conv", "leaky_relu")),
    "leaky_relu_inplace": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.LeakyReLU(inplace=True)), [IMG],
                               ops=("conv", "leaky_relu")),
    "prelu_channels_after_conv": Case(lambda: with_prelu_slopes(nn.Sequential(nn.Conv2d(4, 8, 3), nn.PReLU(8))),
                                      [IMG], ops=("conv", "prelu")),
    "prelu_single": Case(lambda: nn.PReLU(init=0.2), [IMG], ops=("prelu",)),
    "prelu_linear": Case(lambda: with_prelu_slopes(nn.Sequential(nn.Linear(16, 8), nn.PReLU(8))), [(2, 16)],
                         ops=("linear", "prelu")),
    "silu": Case(lambda: Fn(F.silu), [IMG], 2.0, ops=("silu",)),
    "silu_after_conv": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.SiLU()), [IMG], ops=("conv", "silu")),
    "silu_inplace": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.SiLU(inplace=True)), [IMG], ops=("conv", "silu")),
    "elu": Case(lambda: Fn(F.elu), [IMG], 2.0, ops=("elu",)),
    "elu_after_conv": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.ELU()), [IMG], ops=("conv", "elu")),
    "elu_alpha": Case(lambda: Fn(lambda x: F.elu(x, alpha=0.5)), [IMG], 2.0, ops=("elu",)),
    "elu_inplace": Case(lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.ELU(inplace=True)), [IMG], ops=("conv", "elu")),
    "exp": Case(lambda: Fn(torch.exp), [IMG], ops=("exp",)),
    "exp_after_conv": Case(lambda: Fn(torch.exp, 4, 8), [IMG], 0.5, ops=("conv", "exp")),
    "exp_": Case(lambda: Fn(lambda x: torch.exp_(x.abs())), [IMG], 0.5, ops=("exp", "abs")),
    "log": Case(lambda: Fn(lambda x: torch.log(x.abs())), [IMG], ops=("log", "abs")),
    "log_after_conv": Case(lambda: Fn(lambda x: torch.log(torch.sigmoid(x)), 4, 8), [IMG], ops=("conv", "sigmoid", "log")),
    "log_": Case(lambda: Fn(lambda x: torch.log_(x.abs())), [IMG], ops=("log", "abs")),
    "rsqrt": Case(lambda: Fn(lambda x: torch.rsqrt(torch.sigmoid(x))), [IMG], ops=("rsqrt", "sigmoid")),
    "rsqrt_after_conv": Case(lambda: Fn(lambda x: torch.rsqrt(torch.exp(x)), 4, 8), [IMG], ops=("conv", "exp", "rsqrt")),
    "rsqrt_": Case(lambda: Fn(lambda x: torch.rsqrt_(torch.sigmoid(x))), [IMG], ops=("rsqrt", "sigmoid")),
    "sqrt": Case(lambda: Fn(lambda x: torch.sqrt(x.abs())), [IMG], ops=("sqrt", "abs")),
    "sqrt_after_conv": Case(lambda: Fn(lambda x: torch.sqrt(F.relu(x)), 4, 8), [IMG], ops=("conv", "sqrt")),
    "sqrt_": Case(lambda: Fn(lambda x: torch.sqrt_(x.abs())), [IMG], ops=("sqrt", "abs")),
    "neg": Case(lambda: Fn(torch.neg), [IMG], ops=("neg",)),
    "neg_after_conv": Case(lambda: Fn(lambda x: -x, 4, 8), [IMG], ops=("conv", "neg")),
    "neg_after_relu": Case(lambda: Fn(lambda x: -F.relu(x)), [IMG], ops=("relu", "neg")),
    "neg_": Case(lambda: Fn(lambda x: torch.neg_(x.abs())), [IMG], ops=("neg", "abs")),
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
    "sub_broadcast_tokens": Case(lambda: Fn(torch.sub), [(1, 8, 16), (1, 8, 1)], ops=("sub",)),
    "rsqrt_abs": Case(lambda: Fn(lambda x: torch.rsqrt(x.abs())), [IMG], ops=("rsqrt", "abs")),
    "layer_norm": Case(lambda: nn.LayerNorm(16), [(1, 8, 16)], ops=("mean", "sub", "mul", "add", "rsqrt")),
    # a ViT's class token x[:, 0], and a row of an image
    "select_token": Case(lambda: Fn(lambda x: x.abs()[:, 0]), [(1, 8, 16)], ops=("abs", "select")),
    "select_row_after_conv": Case(lambda: Fn(lambda x: x[:, :, -2], 4, 8), [IMG], ops=("conv", "select")),
    "linear_3d_after_transpose": Case(lambda: LinearOnTokens(), [(1, 8, 4, 4)], ops=("conv", "linear_nd", "add")),
}


class SqueezeExcite(nn.Module):
    """MobileNetV3's block: conv, then x * hardsigmoid(fc2(relu(fc1(avg_pool(x)))))."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)

    def forward(self, x):
        x = self.conv(x)
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


def with_prelu_slopes(model: nn.Module) -> nn.Module:
    """Distinct per-channel slopes (PReLU starts them all at 0.25)."""
    for m in model.modules():
        if isinstance(m, nn.PReLU):
            with torch.no_grad():
                m.weight.copy_(torch.linspace(-0.3, 0.6, m.weight.numel()))
    return model


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


class WithConstant(nn.Module):
    """``fn(x, constant)`` with a per-channel constant buffer of shape [1, C, 1, 1]."""

    def __init__(self, fn, values):
        super().__init__()
        self.fn = fn
        self.register_buffer("c", torch.tensor(values).reshape(1, -1, 1, 1))

    def forward(self, x):
        return self.fn(x, self.c)


class YoloDecode(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 1)

    def forward(self, x):
        y = torch.sigmoid(self.conv(x))
        # YOLOv5 also concatenates the confidences y[:, 4:] themselves: their fixed sigmoid
        # parameters are requantized to the cat's on the CPU (a second delegate), not tested here
        return torch.cat([y[:, :2] * 2 - 0.5, (y[:, 2:4] * 2) ** 2], 1)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return F.softmax(self.fc(F.dropout(x.flatten(1), 0.2, self.training)), dim=-1)


class CatSigmoid(nn.Module):
    """A sigmoid's fixed output parameters (1/256) meet a conv's in a cat: convert_pt2e leaves a
    requantization between them, which stays in the partition."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c(torch.cat([torch.sigmoid(self.a(x)), self.b(x)], 1))
# --- structural ops (ops-structure) -----------------------------------------------------------
class Seq(nn.Sequential):
    pass


def tconv(*a, **k):
    return lambda: nn.ConvTranspose2d(*a, **k)


STRUCTURE_CASES = {
    # transposed convs: VALID TRANSPOSE_CONV + a crop to PyTorch's padding / output_padding
    "conv_transpose2d": Case(tconv(4, 6, 3, stride=2, padding=1, output_padding=1), [IMG], ops=("conv",)),
    "conv_transpose2d_k4s2p1": Case(tconv(4, 6, 4, stride=2, padding=1), [IMG], ops=("conv",)),
    "conv_transpose2d_k2s2": Case(tconv(4, 6, 2, stride=2, bias=False), [IMG], ops=("conv",)),
    "conv_transpose2d_op_gt_pad": Case(tconv(4, 6, 3, stride=2, output_padding=1), [IMG], ops=("conv",)),
    "conv_transpose2d_relu": Case(lambda: Seq(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1), nn.ReLU()), [IMG],
                                  ops=("conv",)),
    "conv_transpose2d_relu6": Case(lambda: Seq(nn.ConvTranspose2d(4, 6, 5, stride=2, padding=2, output_padding=1),
                                               nn.ReLU6()), [IMG], ops=("conv",)),
    "conv_transpose1d": Case(lambda: nn.ConvTranspose1d(4, 6, 4, stride=2, padding=1), [(1, 4, 16)], ops=("conv",)),
    "conv_transpose_decoder": Case(lambda: Seq(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                                               nn.ConvTranspose2d(8, 4, 2, stride=2)), [IMG], ops=("conv",)),
    # padding="same": CONV_2D (odd kernel); PAD + CONV_2D (even kernel: to_edge's constant_pad_nd)
    "conv2d_padding_same": Case(conv(4, 8, 3, padding="same"), [IMG], ops=("conv",)),
    "conv2d_padding_same_even": Case(conv(4, 8, 4, padding="same"), [IMG], ops=("conv", "pad")),
    "conv1d_padding_same": Case(lambda: nn.Conv1d(4, 8, 5, padding="same"), [(1, 4, 16)], ops=("conv",)),
    "conv1d_padding_same_even": Case(lambda: nn.Conv1d(4, 8, 2, padding="same"), [(1, 4, 16)], ops=("conv", "pad")),
    # resizes (F.interpolate / nn.Upsample): scales 1, 2, 4, 8 per dimension
    "upsample_nearest_x2": Case(lambda: Fn(lambda x: F.interpolate(x, scale_factor=2)), [IMG],
                                ops=("upsample_nearest2d",)),
    "upsample_nearest_size": Case(lambda: Fn(lambda x: F.interpolate(x, size=(16, 32)), 4, 8), [IMG],
                                  ops=("conv", "upsample_nearest2d")),
    "upsample_nearest_module": Case(lambda: Seq(nn.Conv2d(4, 8, 1), nn.Upsample(scale_factor=4)), [IMG],
                                    ops=("conv", "upsample_nearest2d")),
    "upsample_bilinear_x2": Case(lambda: Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")), [IMG],
                                 ops=("upsample_bilinear2d",)),
    "upsample_bilinear_x2_align": Case(
        lambda: Fn(lambda x: F.interpolate(x, size=(15, 15), mode="bilinear", align_corners=True)), [IMG],
        ops=("upsample_bilinear2d",)),
    "upsample_bilinear_size": Case(lambda: Fn(lambda x: F.interpolate(x, size=(32, 16), mode="bilinear"), 4, 8),
                                   [IMG], ops=("conv", "upsample_bilinear2d")),
    "upsample_bilinear_module_x8": Case(lambda: Seq(nn.Conv2d(4, 8, 1), nn.Upsample(scale_factor=8, mode="bilinear")),
                                        [(1, 4, 4, 4)], ops=("conv", "upsample_bilinear2d")),
    # 1-D pools (edge: unsqueeze -> 2-D pool -> squeeze), pool values of max_pool2d_with_indices
    "max_pool1d": Case(lambda: Fn(lambda x: F.max_pool1d(x, 2)), [SEQ], ops=("max_pool2d", "view")),
    "max_pool1d_stride_pad": Case(lambda: Fn(lambda x: F.max_pool1d(x, 3, 1, 1)), [SEQ], ops=("max_pool2d", "view")),
    "avg_pool1d": Case(lambda: Fn(lambda x: F.avg_pool1d(x, 4)), [SEQ], ops=("avg_pool2d", "view")),
    "avg_pool1d_pad": Case(lambda: Fn(lambda x: F.avg_pool1d(x, 3, 2, 1)), [SEQ], ops=("avg_pool2d", "view")),
    "max_pool2d_return_indices": Case(lambda: Fn(lambda x: F.max_pool2d(x, 2, return_indices=True)[0], 4, 8),
                                      [IMG], ops=("conv", "max_pool2d")),
    "keyword_spotting": Case(lambda: KeywordSpotting(), [(1, 10, 49)], ops=("conv", "max_pool2d", "view", "mean",
                                                                         "linear")),
    # F.pad reflect: MIRROR_PAD (aten.pad kept whole)
    "pad_reflect": Case(lambda: Fn(lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"), 4, 8), [IMG],
                        ops=("conv", "pad_reflect")),
    "pad_reflect_1d": Case(lambda: Fn(lambda x: F.pad(x, (3, 1), mode="reflect")), [SEQ], ops=("pad_reflect",)),
    "pad_reflect_conv": Case(lambda: Seq(nn.ReflectionPad2d(1), nn.Conv2d(4, 8, 3)), [IMG], ops=("conv", "pad_reflect")),
    # split / chunk (SPLIT, SPLIT_V) and unbind (slices + squeezes) after a conv
    "split": Case(lambda: Fn(lambda x: torch.split(x, 4, dim=1), 4, 8), [IMG], ops=("conv", "split")),
    "split_sizes": Case(lambda: Fn(lambda x: torch.split(x, [2, 6], dim=1), 4, 8), [IMG], ops=("conv", "split")),
    "chunk_width": Case(lambda: Fn(lambda x: torch.chunk(x, 2, dim=3), 4, 8), [IMG], ops=("conv", "split")),
    "chunk_one_used": Case(lambda: Fn(lambda x: torch.chunk(x, 2, dim=1)[1], 4, 8), [IMG], ops=("conv", "split")),
    "unbind": Case(lambda: Fn(lambda x: torch.unbind(x, dim=1), 4, 3), [IMG], ops=("conv", "slice", "view")),
    # squeeze / unsqueeze / transpose / unflatten between two convs: one partition
    "squeeze_unsqueeze": Case(lambda: Between(lambda x: x.flatten(2).unsqueeze(2).squeeze(2).unflatten(2, (8, 8))),
                              [IMG], ops=("conv", "view")),
    "transpose_between_convs": Case(lambda: Between(lambda x: x.transpose(2, 3)), [IMG], ops=("conv", "permute")),
    "view_permute_1d_2d": Case(lambda: Conv1dTo2d(), [(1, 4, 16)], ops=("conv", "view", "permute")),
    # batch norm not after a conv: a depthwise 1x1 conv (neutronq.aten_passes.batch_norm_to_depthwise_conv)
    "batch_norm2d_alone": Case(lambda: Fn(BatchNorm(nn.BatchNorm2d(4))), [IMG], ops=("conv",)),
    "batch_norm1d_after_add": Case(lambda: AddBatchNorm1d(), [(1, 4, 16)], ops=("add", "conv")),
    "batch_norm1d_features": Case(lambda: Seq(nn.Linear(16, 8), nn.ReLU(), BatchNorm(nn.BatchNorm1d(8))), [(2, 16)],
                                  ops=("linear", "conv", "view")),
}
CASES.update(STRUCTURE_CASES)


class Between(nn.Module):
    """conv -> fn -> conv: the data movement between two NPU ops."""

    def __init__(self, fn):
        super().__init__()
        self.a, self.b, self.fn = nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 4, 1), fn

    def forward(self, x):
        return self.b(self.fn(self.a(x)))


class Conv1dTo2d(nn.Module):
    """A conv1d whose output becomes a 2-D map (view + permute) for a conv2d."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv1d(4, 8, 3, padding=1), nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)  # [1, 8, 16]
        return self.b(y.view(1, 2, 4, 16).permute(0, 1, 3, 2))


def BatchNorm(bn):
    """A batch norm in eval mode with non-trivial statistics."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5, generator=g)
        bn.running_var.uniform_(0.5, 2.0, generator=g)
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.uniform_(-0.5, 0.5, generator=g)
    return bn.eval()


class AddBatchNorm1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = BatchNorm(nn.BatchNorm1d(4))

    def forward(self, x):
        return self.bn(x + x.abs())


class KeywordSpotting(nn.Module):
    """A small 1-D conv keyword spotter (MFCC frames in): conv1d -> relu -> max_pool1d, twice,
    then a squeeze / unsqueeze round trip, a mean over time and a classifier."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(10, 16, 5, padding=2)
        self.c2 = nn.Conv1d(16, 16, 3, padding=1, groups=16)
        self.c3 = nn.Conv1d(16, 24, 1)
        self.fc = nn.Linear(24, 12)

    def forward(self, x):
        x = F.max_pool1d(F.relu(self.c1(x)), 2)
        x = F.max_pool1d(F.relu(self.c3(F.relu(self.c2(x)))), 2)
        x = x.unsqueeze(2).squeeze(2)
        return self.fc(x.mean(dim=2))
