"""Shared test helpers: export + quantize tiny models in one line."""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from neutronq import NeutronQuantizer, NeutronTargetSpec

Q = torch.ops.quantized_decomposed


def export(model: torch.nn.Module, example: tuple, strict: bool = False):
    return torch.export.export(model.eval(), example, strict=strict)


def calibration_set(example: tuple, count: int = 8, seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    return [tuple(torch.randn(t.shape, generator=g) for t in example) for _ in range(count)]


def quantize(model: torch.nn.Module, example: tuple, strict: bool = False,
             calibration: Optional[Iterable[tuple]] = None, **quantizer_kwargs):
    """Export, prepare_pt2e with NeutronQuantizer, calibrate, convert_pt2e.

    Returns (prepared model, converted model, calibration set)."""
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), **quantizer_kwargs)
    gm = export(model, example, strict).module()
    prepared = prepare_pt2e(gm, quantizer)
    calibration = list(calibration) if calibration is not None else calibration_set(example)
    with torch.no_grad():
        for inputs in calibration:
            prepared(*inputs)
    return prepared, convert_pt2e(prepared), calibration


def nodes(gm, target) -> list:
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target == target]


def is_q(n) -> bool:
    return n.op == "call_function" and n.target in (
        Q.quantize_per_tensor.default, Q.quantize_per_channel.default)


def is_dq(n) -> bool:
    return n.op == "call_function" and n.target in (
        Q.dequantize_per_tensor.default, Q.dequantize_per_channel.default)


def dq_params(n):
    """(scale, zero_point, qmin, qmax, dtype) of a per-tensor dequantize node."""
    assert n.target == Q.dequantize_per_tensor.default, n.format_node()
    return tuple(n.args[1:6])


def q_params(n):
    assert n.target == Q.quantize_per_tensor.default, n.format_node()
    return tuple(n.args[1:6])


def smooth_images(count: int, seed: int) -> list[tuple]:
    """[1, 3, 6, 6] inputs upsampled from 2x2 noise: neighbouring values are correlated, as in
    photos, which is where the rounding direction of one weight can offset another's."""
    g = torch.Generator().manual_seed(seed)
    small = [torch.randn(1, 3, 2, 2, generator=g) for _ in range(count)]
    return [(torch.nn.functional.interpolate(x, size=(6, 6), mode="bilinear", align_corners=True),)
            for x in small]


def calibrated(model: torch.nn.Module, calibration: list[tuple], **quantizer_kwargs):
    """prepare_pt2e with NeutronQuantizer, then the calibration pass only (no convert)."""
    quantizer = NeutronQuantizer(NeutronTargetSpec("imxrt700"), **quantizer_kwargs)
    prepared = prepare_pt2e(export(model, calibration[0]).module(), quantizer)
    with torch.no_grad():
        for x in calibration:
            prepared(*x)
    return prepared


class DepthwiseNet(torch.nn.Module):
    """conv -> relu -> depthwise conv -> relu -> linear on [1, 3, 6, 6] inputs. The depthwise
    channels' gains span ``spread`` decades: per-tensor int8 rounds the small channels' weights to
    a few steps, where the rounding direction matters. ``compensate``: the linear layer undoes the
    gains (as BN folding leaves depthwise weights), so every channel matters equally."""

    def __init__(self, spread: float = 2.0, compensate: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.pw = torch.nn.Conv2d(3, 16, 1)
        self.dw = torch.nn.Conv2d(16, 16, 3, groups=16, padding=1)
        self.fc = torch.nn.Linear(16 * 6 * 6, 10)
        with torch.no_grad():
            self.pw.weight.copy_(torch.randn(16, 3, 1, 1, generator=g))
            gains = torch.logspace(-spread, 0, 16).reshape(-1, 1, 1, 1)
            self.dw.weight.copy_(torch.randn(16, 1, 3, 3, generator=g) * gains)
            if compensate:
                self.fc.weight.mul_((1.0 / gains).reshape(1, 16, 1).expand(1, 16, 36).reshape(1, -1))

    def forward(self, x):
        return self.fc(torch.relu(self.dw(torch.relu(self.pw(x)))).flatten(1))
