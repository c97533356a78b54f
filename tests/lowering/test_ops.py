"""One test per supported op, both export modes: quantize a tiny model, lower it, run the
payload's TFLite in LiteRT's reference kernels and compare with the ``convert_pt2e`` model.

Adding an op is one entry in ``MODELS``: (model factory, input shapes[, input scale]); inputs
and calibration data are standard normal times the scale (1 unless given).
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import calibration_set
from lowering_helpers import delegates, payloads, quantize_and_lower, run_lowered
from neutronq.lowering import host_check
from neutronq.lowering.payload import run_payload
from neutronq.lowering.rounding_audit import audit_payload

torch.manual_seed(0)


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
MODELS = {
    # conv family
    "conv2d": (conv(4, 8, 3), [IMG]),
    "conv2d_same_padding": (conv(4, 8, 3, padding=1), [IMG]),
    "conv2d_stride2_pad": (conv(4, 8, 3, stride=2, padding=1), [IMG]),
    "conv2d_dilation": (conv(4, 8, 3, dilation=2, padding=2), [IMG]),
    "conv2d_no_bias": (conv(4, 8, 1, bias=False), [IMG]),
    "conv2d_depthwise": (conv(4, 4, 3, padding=1, groups=4), [IMG]),
    "conv2d_relu": (lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU()), [IMG]),
    "conv2d_relu_inplace": (lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(inplace=True)), [IMG]),
    "conv2d_relu6": (lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU6()), [IMG]),
    "conv2d_f_relu6": (lambda: Fn(F.relu6, 4, 8), [IMG]),
    "conv2d_hardtanh_n1_1": (lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Hardtanh()), [IMG]),
    "conv2d_hardtanh_inplace": (lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Hardtanh(0.0, 6.0, inplace=True)), [IMG]),
    "conv1d": (lambda: nn.Conv1d(4, 8, 3, padding=1), [(1, 4, 16)]),
    "conv1d_stride": (lambda: nn.Conv1d(4, 8, 5, stride=2), [(1, 4, 16)]),
    # fully connected
    "linear": (lambda: nn.Linear(16, 8), [(2, 16)]),
    "linear_no_bias": (lambda: nn.Linear(16, 8, bias=False), [(2, 16)]),
    "linear_relu": (lambda: nn.Sequential(nn.Linear(16, 8), nn.ReLU()), [(2, 16)]),
    "linear_3d_input": (lambda: nn.Linear(16, 8), [(2, 3, 16)]),
    "addmm": (lambda: Addmm(), [(2, 16)]),
    # element-wise
    "add": (lambda: Fn(torch.add), [IMG, IMG]),
    "add_broadcast": (lambda: Fn(torch.add), [IMG, (1, 4, 1, 1)]),
    "add_inplace": (lambda: Fn(lambda a, b: torch.relu(a).add_(b)), [IMG, IMG]),
    "mul": (lambda: Fn(torch.mul), [IMG, IMG]),
    "abs": (lambda: Fn(torch.abs), [IMG]),
    "relu": (lambda: Fn(F.relu), [IMG]),
    "relu_": (lambda: Fn(torch.relu_), [IMG]),
    "hardtanh": (lambda: Fn(F.hardtanh), [IMG], 0.4),
    "hardtanh_": (lambda: Fn(lambda x: F.hardtanh_(x.abs())), [IMG], 0.4),
    "sigmoid": (lambda: Fn(torch.sigmoid), [IMG]),
    "tanh": (lambda: Fn(torch.tanh), [IMG]),
    "tanh_": (lambda: Fn(lambda x: torch.tanh_(x.abs())), [IMG]),
    "softmax": (lambda: Fn(lambda x: F.softmax(x, dim=1)), [(2, 10)]),
    "softmax_channels_4d": (lambda: Fn(lambda x: F.softmax(x, dim=1)), [IMG]),
    # pools and means
    "max_pool2d": (lambda: Fn(lambda x: F.max_pool2d(x, 2)), [IMG]),
    "max_pool2d_same": (lambda: Fn(lambda x: F.max_pool2d(x, 3, 1, 1)), [IMG]),
    "avg_pool2d": (lambda: Fn(lambda x: F.avg_pool2d(x, 2)), [IMG]),
    "avg_pool2d_pad_count": (lambda: Fn(lambda x: F.avg_pool2d(x, 3, 2, 1)), [IMG]),
    "avg_pool2d_pad_exclude": (lambda: Fn(lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)), [IMG]),
    "adaptive_avg_pool2d": (lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 1)), [IMG]),
    "adaptive_avg_pool2d_2x2": (lambda: Fn(lambda x: F.adaptive_avg_pool2d(x, 2)), [IMG]),
    "mean_dim_keepdim": (lambda: Fn(lambda x: x.mean(dim=(2, 3), keepdim=True)), [IMG]),
    "mean_dim": (lambda: Fn(lambda x: x.mean(dim=(2, 3))), [IMG]),
    "mean_dim_channels": (lambda: Fn(lambda x: x.mean(dim=1)), [IMG]),
    # data movement, after a conv so the partition computes something
    "view": (lambda: Fn(lambda x: x.view(1, 8, 64), 4, 8), [IMG]),
    "reshape": (lambda: Fn(lambda x: x.reshape(1, 16, 4, 8), 4, 8), [IMG]),
    "flatten": (lambda: Fn(lambda x: torch.flatten(x, 1), 4, 8), [IMG]),
    "permute": (lambda: Fn(lambda x: x.permute(0, 2, 3, 1), 4, 8), [IMG]),
    "permute_hw": (lambda: Fn(lambda x: x.permute(0, 1, 3, 2), 4, 8), [IMG]),
    "slice": (lambda: Fn(lambda x: x[:, 2:6], 4, 8), [IMG]),
    "slice_hw_step": (lambda: Fn(lambda x: x[:, :, 1:7:2], 4, 8), [IMG]),
    "cat": (lambda: Fn(lambda x, y: torch.cat([x, y], 1)), [IMG, IMG]),
    "cat_width": (lambda: Fn(lambda x, y: torch.cat([x, y], 3)), [IMG, IMG]),
    "pad": (lambda: Fn(lambda x: F.pad(x, (1, 2, 0, 1)), 4, 8), [IMG]),
    "dropout": (lambda: nn.Sequential(nn.Conv2d(4, 8, 3), nn.Dropout(0.5)), [IMG]),
    "classifier": (lambda: Classifier(), [IMG]),
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


def _inputs_in_calibration_range(calibration, count: int, seed: int = 1):
    """Fresh inputs, uniform within each input's calibrated [min, max]."""
    g = torch.Generator().manual_seed(seed)
    stacked = [torch.stack([c[i] for c in calibration]) for i in range(len(calibration[0]))]
    lo = [s.min() for s in stacked]
    hi = [s.max() for s in stacked]
    return [tuple(l + (h - l) * torch.rand(s.shape[1:], generator=g) for s, l, h in zip(stacked, lo, hi))
            for _ in range(count)]


def _out_qparams(edge):
    """(scale, zero point) of each model output's final dequantize: one int8 step and its zero."""
    ep = edge.exported_program()
    out = next(n for n in ep.graph.nodes if n.op == "output")
    return [(float(n.args[1]), int(n.args[2])) for n in out.args[0]]


def check_against_pt2e(converted, edge, calibration, count: int = 8, payload_calls: list = None):
    """(fraction of outputs within one step of convert_pt2e's, convert_pt2e's int8 outputs);
    ``payload_calls`` collects (payload bytes, int8 inputs) of every delegate call."""
    qparams = _out_qparams(edge)
    within, total = 0, 0
    int8_outputs = []
    for inputs in _inputs_in_calibration_range(calibration, count):
        ref = converted(*inputs)
        with mock.patch.object(host_check, "run_payload", _recording_run_payload(payload_calls)):
            got = run_lowered(edge, inputs)
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        for r, o, (s, zp) in zip(ref, got, qparams):
            diff = (r - o).abs()
            within += int((diff <= s * 1.001).sum())
            total += diff.numel()
            int8_outputs.append(torch.round(r / s) + zp)
    return within / total, torch.cat([o.flatten() for o in int8_outputs])


def _recording_run_payload(calls):
    def run(payload, inputs):
        if calls is not None:
            calls.append((payload, [np.array(x) for x in inputs]))
        return run_payload(payload, inputs)

    return run


@pytest.mark.parametrize("name", list(MODELS))
def test_op_lowers_and_matches_pt2e(name, strict):
    factory, shapes, *scale = MODELS[name]
    scale = scale[0] if scale else 1.0
    model = factory().eval()
    example = tuple(torch.randn(s) for s in shapes)
    calibration = [tuple(t * scale for t in c) for c in calibration_set(example)]
    converted, edge, partitioner, calibration = quantize_and_lower(model, example, strict, calibration)

    assert len(delegates(edge)) == 1, partitioner.cpu_ops
    cpu_compute = [c for c in partitioner.cpu_ops if "quantize" not in c.op]
    assert cpu_compute == [], cpu_compute
    payload = payloads(edge)[0]
    assert payload.kind == "tflite" and payload.tflite[4:8] == b"TFL3"

    calls = []
    agree, int8_ref = check_against_pt2e(converted, edge, calibration, payload_calls=calls)
    assert agree >= 0.99, f"{name}: only {agree:.2%} of outputs within one int8 step"
    # conv / depthwise / FC / add / mean: LiteRT's results are exact rounding of the payload's
    # own arithmetic except at TFLite's double-rounding ties (neutronq.lowering.rounding_audit)
    audits = audit_payload(calls[0][0], [inputs for _, inputs in calls])
    assert [a for a in audits if not a.explained] == []
    levels = int8_ref.unique()
    assert levels.numel() > 2, f"{name}: constant output"
    # clipped at the int8 limits; -128 is no clipping when it is the real 0 (relu, sigmoid ...)
    zero_is_min = _out_qparams(edge)[0][1] == -128
    saturated = float(((int8_ref >= 127) | ((int8_ref <= -128) & (not zero_is_min))).float().mean())
    assert saturated < 0.5, f"{name}: {saturated:.0%} of outputs saturated"
