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
    "linear_3d_input": Case(lambda: nn.Linear(16, 8), [(2, 3, 16)], ops=('linear', 'view')),
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
}


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
