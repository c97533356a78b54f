"""aten.convolution (conv1d / conv2d, depthwise) -> CONV_2D / DEPTHWISE_CONV_2D.

Weights: CONV_2D takes OHWI with per-axis quantized_dimension 0; DEPTHWISE_CONV_2D takes
[1, H, W, C] with quantized_dimension 3. Bias int32, scale input x weight, zero point 0.
Explicit padding: SAME when exactly equivalent, otherwise a PAD (with the zero point) + VALID.
conv1d runs as a CONV_2D of height 1 (the reshapes around it keep the bytes in place).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from neutronq.fx import node_op, tensor_val
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.edge import fused_activation, is_dq_of_constant
from neutronq.lowering.limits import LimitCheck, round_up, shape
from neutronq.lowering.ops._padding import same_equivalent
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.ops.base import OpLowering

CONV_MAX_KERNEL_STRIDE_DILATION = 4096  # [NXP-conv]
CONV_MAX_KERNEL_VOLUME = 65535  # [NXP-conv] kH * kW * round_up(in_channels, MACs)
TRANSPOSED_CONV_MAX_STRIDE = 2  # [NXP-conv]

ACTIVATIONS = {
    "NONE": tfl.ActivationFunctionType.NONE,
    "RELU": tfl.ActivationFunctionType.RELU,
    "RELU6": tfl.ActivationFunctionType.RELU6,
    "RELU_N1_TO_1": tfl.ActivationFunctionType.RELU_N1_TO_1,
}


def conv_args(node):
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = node.args[:9]
    return x, w, b, list(stride), list(padding), list(dilation), bool(transposed), int(groups)


def is_depthwise(node) -> bool:
    x, w, *_ , groups = conv_args(node)
    in_ch = tensor_val(x).shape[1]
    out_ch = tensor_val(w).shape[0]
    return groups > 1 and groups == in_ch == out_ch


def convert_convolution(ctx: ConversionContext, node) -> None:
    x_node, w_node, b_node, stride, padding, dilation, _, groups = conv_args(node)
    x = ctx.act(x_node)
    w = ctx.qconst(w_node)
    bias = ctx.qconst(b_node) if b_node is not None else None
    out_node, act = fused_activation(node)
    out_shape = ctx.out_shape(node)
    depthwise = is_depthwise(node)

    wdata = w.data
    if len(x.shape) == 3:  # conv1d as a conv2d of height 1
        x = ctx.view(x, (x.shape[0], x.shape[1], 1, x.shape[2]), name=f"{node.name}_in2d")
        wdata = wdata[:, :, None, :]
        stride, padding, dilation = [1, *stride], [0, *padding], [1, *dilation]
        out4 = (out_shape[0], out_shape[1], 1, out_shape[2])
    else:
        out4 = out_shape
    n, c, h, wid = x.shape
    o, _, kh, kw = wdata.shape

    # padding: SAME if equivalent, else PAD + VALID
    src = x
    pad_mode = tfl.Padding.VALID
    if any(padding):
        if all(same_equivalent(s, k, st, p, d, os) for s, k, st, p, d, os in
               zip((h, wid), (kh, kw), stride, padding, dilation, out4[2:])):
            pad_mode = tfl.Padding.SAME
        else:
            src = pad_nhwc(ctx, x, padding[0], padding[0], padding[1], padding[1], f"{node.name}_pad")

    if depthwise:
        weights = np.transpose(wdata[:, 0], (1, 2, 0))[None]  # [1, kH, kW, C]
        w_idx = ctx.int8_weights(weights, w, axis=3, name=f"{node.name}_weights")
        opts = tfl.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = 1
        code = "DEPTHWISE_CONV_2D"
    else:
        weights = np.transpose(wdata, (0, 2, 3, 1))  # OHWI
        w_idx = ctx.int8_weights(weights, w, axis=0, name=f"{node.name}_weights")
        opts = tfl.Conv2DOptionsT()
        code = "CONV_2D"
    opts.padding = pad_mode
    opts.strideH, opts.strideW = int(stride[0]), int(stride[1])
    opts.dilationHFactor, opts.dilationWFactor = int(dilation[0]), int(dilation[1])
    opts.fusedActivationFunction = ACTIVATIONS[act]
    b_idx = ctx.int32_bias(bias, x.scale, w, o, f"{node.name}_bias")

    qp = ctx.out_qparams(out_node)
    out = ctx.new_tensor(out4, qp, node.name)
    ctx.b.op(code, [src.index, w_idx, b_idx], [out.index], opts)
    if len(out_shape) == 3:
        out = ctx.view(out, out_shape, name=f"{node.name}_out1d")
    ctx.values[node] = out
    if out_node is not node:
        ctx.values[out_node] = out
        ctx.done.add(out_node)


def pad_nhwc(ctx: ConversionContext, x, top, bottom, left, right, name):
    """PAD of a canonical rank-4 tensor's H and W with its zero point (real 0)."""
    n, c, h, w = x.shape
    out = ctx.new_tensor((n, c, h + top + bottom, w + left + right), x.qparams, name)
    pads = ctx.b.const_int32([[0, 0], [top, bottom], [left, right], [0, 0]], f"{name}_paddings")
    ctx.b.op("PAD", [x.index, pads], [out.index], tfl.PadOptionsT())
    return out


# --- conv [NXP-conv] --------------------------------------------------------------------------
def conv_limits(node, spec, ep, res: LimitCheck) -> Optional[str]:
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = node.args[:9]
    if not is_dq_of_constant(w, ep):
        return "conv weight is not an int8 constant (quantize the model with NeutronQuantizer)"
    w_shape = shape(w)
    in_ch, out_ch = shape(x)[1], w_shape[0]
    kernel = list(w_shape[2:])
    if transposed:
        if groups != 1 or max(stride) > TRANSPOSED_CONV_MAX_STRIDE:
            return (f"transposed conv needs groups 1 and stride <= {TRANSPOSED_CONV_MAX_STRIDE} "
                    f"(has groups {groups}, stride {list(stride)})")
        return "transposed conv is within the NPU's limits but neutronq does not lower it to TFLite yet"
    for what, values in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if max(values) > CONV_MAX_KERNEL_STRIDE_DILATION:
            return (f"conv {what} {list(values)} exceeds the NPU limit of "
                    f"{CONV_MAX_KERNEL_STRIDE_DILATION}; reduce it or keep this conv on the CPU")
    depthwise = groups > 1 and groups == in_ch == out_ch
    if groups != 1 and not depthwise:
        return (f"grouped conv (groups {groups}, {in_ch} in, {out_ch} out channels) is not depthwise; "
                "the NPU runs depthwise convs only when groups = in = out channels")
    per_group_in = in_ch // groups
    volume_macs = spec.num_macs
    if volume_macs is None:
        res.unenforced.append(
            f"{node.name}: kH*kW*round_up(in_channels, MACs) <= {CONV_MAX_KERNEL_VOLUME} not enforced: "
            f"MACs per pipe are not published for {spec.target}")
    else:
        k = 1
        for d in kernel:
            k *= int(d)
        volume = k * round_up(per_group_in, volume_macs)
        if volume > CONV_MAX_KERNEL_VOLUME:
            return (f"conv kernel volume kH*kW*round_up(in_channels={per_group_in}, {volume_macs}) = "
                    f"{volume} exceeds the NPU limit {CONV_MAX_KERNEL_VOLUME} for {spec.target}; "
                    "split the input channels or use a smaller kernel")
    if len(shape(x)) not in (3, 4):
        return f"conv of a rank-{len(shape(x))} input: only conv1d and conv2d are lowered"
    if node_op(w).endswith("per_tensor.default") and int(w.args[2]) != 0:
        return "conv weights must be symmetric (zero point 0)"
    return None


OPS = (
    OpLowering("conv", ("aten.convolution.default",), convert_convolution, conv_limits, rules=("conv",),
               tflite=("CONV_2D", "DEPTHWISE_CONV_2D")),
)
