"""Resizes: F.interpolate / nn.Upsample, nearest -> RESIZE_NEAREST_NEIGHBOR, bilinear ->
RESIZE_BILINEAR.

Mapping (measured against PyTorch in LiteRT's reference kernels): torch ``nearest`` is
(align_corners False, half_pixel_centers False), 0 steps; torch bilinear ``align_corners=False``
is (False, True) and ``align_corners=True`` is (True, False), within one step at scales 2, 4 and
8. The size goes in as the output's H and W, whether the model gave ``size`` or
``scale_factor``.

RESIZE_* do not requantize: the output must carry the input's parameters (the quantizer's
``upsample`` rule shares them).

Why scale 3 is off by up to 3 steps in TFLite (and outside the NPU's limit anyway): the int8
RESIZE_BILINEAR kernel holds in/out in 10 fractional bits, ``round(1024 * in / out)``; 1024 / 3 is
not an integer, so source positions drift by up to 0.33 / 1024 of a pixel per output pixel
(0.008 px at the far edge of 8 -> 24) and a step between neighbours of 255 int8 levels moves the
result by 2 levels. At the NPU's scales (1, 2, 4, 8) 1024 / s is exact and only the final rounding
differs (<= 1 step).
"""

from __future__ import annotations

from typing import Optional

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.limits import equal_io, shape
from neutronq.lowering.ops.base import OpLowering
from neutronq.lowering.tflite_builder import tfl

# [NXP-resize] ExecuTorch 1.5.1 backends/nxp upsample_nearest2d_converter.py L32-105 and
# upsample_bilinear2d_converter.py L29-110: rank 4, static shape, the H and W scales each in
# {1, 2, 4, 8} (they may differ); scale = out / in, or (out - 1) / (in - 1) for bilinear with
# align_corners (in H or W = 1 refused).
RESIZE_SCALES = (1, 2, 4, 8)

_NEAREST = "aten.upsample_nearest2d.vec"
_BILINEAR = "aten.upsample_bilinear2d.vec"


def _align_corners(node) -> bool:
    return bool(node.args[2]) if len(node.args) > 2 else bool(node.kwargs.get("align_corners", False))


def _scale_factors(node):
    """The ``scale_factors`` argument (None when the model gave ``size``)."""
    index = 2 if node_op(node) == _NEAREST else 3
    return node.args[index] if len(node.args) > index else node.kwargs.get("scale_factors")


def convert_resize(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    out_shape = ctx.out_shape(node)
    out = ctx.new_tensor(out_shape, x.qparams, node.name)  # no requantization (equal_io)
    size = ctx.b.const_int32([out_shape[2], out_shape[3]], f"{node.name}_size")
    if node_op(node) == _NEAREST:
        opts = tfl.ResizeNearestNeighborOptionsT()
        opts.alignCorners, opts.halfPixelCenters = False, False
        ctx.b.op("RESIZE_NEAREST_NEIGHBOR", [x.index, size], [out.index], opts)
    else:
        ac = _align_corners(node)
        opts = tfl.ResizeBilinearOptionsT()
        opts.alignCorners, opts.halfPixelCenters = ac, not ac
        ctx.b.op("RESIZE_BILINEAR", [x.index, size], [out.index], opts, version=None if ac else 3)
    ctx.values[node] = out


# --- resize [NXP-resize] ----------------------------------------------------------------------
def resize_limits(node, spec, ep, res) -> Optional[str]:
    in_shape, out_shape = shape(node.args[0]), shape(node)
    if len(in_shape) != 4 or len(out_shape) != 4:
        return "resize of a tensor that is not 4-D [N, C, H, W] (static shape)"
    bilinear = node_op(node) == _BILINEAR
    ac = bilinear and _align_corners(node)
    scales = []
    for i, o in zip(in_shape[2:], out_shape[2:]):
        if ac:
            if i == 1:
                return "bilinear resize with align_corners of a size-1 dimension"
            scales.append((o - 1) / (i - 1))
        else:
            scales.append(o / i)
    if any(s not in RESIZE_SCALES for s in scales):
        return (f"resize by {scales[0]:g} x {scales[1]:g} (H x W): the NPU resizes by 1, 2, 4 or 8 in each "
                "dimension" + (" ((out - 1) / (in - 1) with align_corners)" if ac else ""))
    factors = _scale_factors(node)
    if factors is not None and not ac and any(abs(float(f) - s) > 1e-9 for f, s in zip(factors, scales)):
        # PyTorch maps output to input pixels with 1 / scale_factor, TFLite with in / out
        return (f"resize with scale_factor {list(factors)} while the output is {scales} times the input: "
                "PyTorch samples with 1 / scale_factor, the NPU with in / out")
    return equal_io(node)


OPS = (
    OpLowering("upsample_nearest2d", (_NEAREST,), convert_resize, resize_limits, rules=("upsample",),
               tflite=("RESIZE_NEAREST_NEIGHBOR",)),
    OpLowering("upsample_bilinear2d", (_BILINEAR,), convert_resize, resize_limits, rules=("upsample",),
               tflite=("RESIZE_BILINEAR",)),
)
