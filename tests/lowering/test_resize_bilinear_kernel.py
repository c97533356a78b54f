"""Why the NPU's bilinear resize scales are 1, 2, 4 and 8 (resize.py): LiteRT's int8
RESIZE_BILINEAR (the converter's input semantics) holds in / out in 10 fractional bits,
``round(1024 * in / out)``. At 2, 4 and 8 that is exact and the result is within one step of exact
bilinear interpolation (final rounding); at 3 (1024 / 3 = 341.33 -> 341) the source positions
drift and the result is off by more than one step where neighbours differ a lot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from neutronq.lowering.tflite_builder import QParams, TFLiteBuilder, tfl


def litert_resize(xq: np.ndarray, out: int, align_corners: bool) -> np.ndarray:
    b = TFLiteBuilder("resize")
    qp = QParams.per_tensor(0.05, 3)
    n, h, w, c = xq.shape
    x = b.tensor(xq.shape, np.int8, qp, "x")
    y = b.tensor((n, out, out, c), np.int8, qp, "y")
    opts = tfl.ResizeBilinearOptionsT()
    opts.alignCorners, opts.halfPixelCenters = align_corners, not align_corners
    b.op("RESIZE_BILINEAR", [x, b.const_int32([out, out], "size")], [y], opts, version=2 if align_corners else 3)
    b.inputs, b.outputs = [x], [y]
    it = Interpreter(model_content=b.finish(), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], xq)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).astype(np.int64)


def fixed_point_resize(xq: np.ndarray, out: int, align_corners: bool) -> np.ndarray:
    """TFLite's integer bilinear resize: positions in 1/1024 pixel, products in 1/2^20, rounded
    half away from zero (written from the kernel's description, checked against LiteRT below)."""
    x = xq.astype(np.int64)
    size = x.shape[1]
    if align_corners:
        scale = ((1 << 10) * (size - 1) + (out - 1) // 2) // (out - 1)
        pos = np.arange(out) * scale
    else:
        scale = ((1 << 10) * size + out // 2) // out
        pos = np.arange(out) * scale + scale // 2 - (1 << 9)
    lo = np.maximum(np.trunc(pos / 1024).astype(np.int64), 0)
    hi = np.minimum((pos + 1023) // 1024, size - 1)
    f = pos - 1024 * lo  # weight of the upper neighbour, in 1/1024
    y = np.zeros((x.shape[0], out, out, x.shape[3]), np.int64)
    for i in range(out):
        for j in range(out):
            acc = (x[:, lo[i], lo[j]] * (1024 - f[i]) * (1024 - f[j]) + x[:, lo[i], hi[j]] * (1024 - f[i]) * f[j]
                   + x[:, hi[i], lo[j]] * f[i] * (1024 - f[j]) + x[:, hi[i], hi[j]] * f[i] * f[j])
            half = np.where(acc > 0, 1 << 19, -(1 << 19))
            y[:, i, j] = np.trunc((acc + half) / (1 << 20)).astype(np.int64)
    return y


def exact_resize(xq: np.ndarray, out: int, align_corners: bool) -> np.ndarray:
    x = torch.from_numpy(xq.astype(np.float64)).permute(0, 3, 1, 2)
    y = F.interpolate(x, size=(out, out), mode="bilinear", align_corners=align_corners)
    return y.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("size,out,align_corners,scale_exact", [
    (8, 16, False, True), (8, 32, False, True), (4, 32, False, True), (8, 15, True, True),
    (8, 24, False, False), (8, 22, True, False),
])
def test_litert_bilinear_is_the_10_bit_fixed_point_kernel(size, out, align_corners, scale_exact):
    xq = np.random.default_rng(0).integers(-128, 128, size=(1, size, size, 4)).astype(np.int8)
    got = litert_resize(xq, out, align_corners)
    np.testing.assert_array_equal(got, fixed_point_resize(xq, out, align_corners))
    steps = np.abs(got - exact_resize(xq, out, align_corners)).max()
    if scale_exact:  # scale 2, 4, 8: only the final rounding differs
        assert steps <= 0.5 + 1e-9
    else:  # scale 3 (in / out not a multiple of 1/1024): the positions drift
        assert steps > 1.0
