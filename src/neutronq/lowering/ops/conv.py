"""aten.convolution (conv1d / conv2d, depthwise) -> CONV_2D / DEPTHWISE_CONV_2D; transposed
(conv_transpose1d / conv_transpose2d) -> TRANSPOSE_CONV.

Weights: CONV_2D takes OHWI with per-axis quantized_dimension 0; DEPTHWISE_CONV_2D takes
[1, H, W, C] with quantized_dimension 3. Bias int32, scale input x weight, zero point 0.
Explicit padding: SAME when exactly equivalent, otherwise a PAD (with the zero point) + VALID.
conv1d runs as a CONV_2D of height 1 (the reshapes around it keep the bytes in place).
``padding="same"`` convs reach the edge dialect as plain convolutions; an even kernel gets a
``constant_pad_nd`` before it, which the conv absorbs (``pad_folds_into_conv``: SAME, as TFLite
also puts the extra pad at the end).

Transposed: PyTorch's weights [in, out, kH, kW] (per-channel axis 1) become TRANSPOSE_CONV's
[out, kH, kW, in] (axis 0); the bias is input 3 (version 3). TRANSPOSE_CONV runs with VALID
padding into the output PyTorch computes before cropping (its size plus 2 x padding), and a
STRIDED_SLICE crops ``padding`` at each side; output_padding rows only get the bias in both.
(TFLite's SAME is off by one pixel against PyTorch when the total padding is odd: it puts the
extra pad at the end, PyTorch crops at the start.) A fused relu / relu6 rides on the
TRANSPOSE_CONV (LiteRT's reference kernel applies it; version 4).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

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
    pads = [(int(p), int(p)) for p in padding]  # (before, after) per spatial dim
    if pad_folds_into_conv(x_node):  # a zero pad before the conv (padding="same", even kernel)
        extra = pad_pairs(x_node, len(shape(x_node)))[2:]
        pads = [(b + eb, a + ea) for (b, a), (eb, ea) in zip(pads, extra)]
        x_node = x_node.args[0]
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
        stride, pads, dilation = [1, *stride], [(0, 0), *pads], [1, *dilation]
        out4 = (out_shape[0], out_shape[1], 1, out_shape[2])
    else:
        out4 = out_shape
    n, c, h, wid = x.shape
    o, _, kh, kw = wdata.shape

    # padding: SAME if it reads the same windows (as many outputs, the same padding before the
    # first), else PAD + VALID
    src = x
    pad_mode = tfl.Padding.VALID
    if any(b or a for b, a in pads):
        if all(same_equivalent(s, k, st, b, d, os) for s, k, st, (b, _), d, os in
               zip((h, wid), (kh, kw), stride, pads, dilation, out4[2:])):
            pad_mode = tfl.Padding.SAME
        else:
            src = pad_nhwc(ctx, x, *pads[0], *pads[1], f"{node.name}_pad")

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
    _store_output(ctx, node, out_node, out, out_shape)


def _store_output(ctx: ConversionContext, node, out_node, out, out_shape) -> None:
    """The conv's [N, H, W, C] result as ``node``'s value (viewed back to [N, C, L] for a 1-D
    conv), and as that of ``out_node``, the fused activation it absorbed."""
    if len(out_shape) == 3:
        out = ctx.view(out, out_shape, name=f"{node.name}_out1d")
    ctx.values[node] = out
    if out_node is not node:
        ctx.values[out_node] = out
        ctx.done.add(out_node)


def convert_transposed_convolution(ctx: ConversionContext, node) -> None:
    x_node, w_node, b_node, stride, padding, _, _, _ = conv_args(node)
    x = ctx.act(x_node)
    w = ctx.qconst(w_node)  # [in, out, k...], per-channel axis 1
    bias = ctx.qconst(b_node) if b_node is not None else None
    out_node, act = fused_activation(node)
    out_shape = ctx.out_shape(node)

    wdata = w.data
    if len(x.shape) == 3:  # conv_transpose1d as a conv_transpose2d of height 1
        x = ctx.view(x, (x.shape[0], x.shape[1], 1, x.shape[2]), name=f"{node.name}_in2d")
        wdata = wdata[:, :, None, :]
        stride, padding = [1, *stride], [0, *padding]
        out4 = (out_shape[0], out_shape[1], 1, out_shape[2])
    else:
        out4 = out_shape
    n, o = x.shape[0], wdata.shape[1]
    weights = np.transpose(wdata, (1, 2, 3, 0))  # [out, kH, kW, in]
    w_idx = ctx.int8_weights(weights, w, axis=0, name=f"{node.name}_weights")
    b_idx = ctx.int32_bias(bias, x.scale, w, o, f"{node.name}_bias")

    # PyTorch's output before cropping `padding` at each side
    full = [out4[2] + 2 * padding[0], out4[3] + 2 * padding[1]]
    qp = ctx.out_qparams(out_node)
    cropped = any(padding)
    out = ctx.new_tensor(out4, qp, node.name)
    raw = ctx.new_tensor((n, o, *full), qp, f"{node.name}_full") if cropped else out
    opts = tfl.TransposeConvOptionsT()
    opts.padding = tfl.Padding.VALID
    opts.strideH, opts.strideW = int(stride[0]), int(stride[1])
    opts.fusedActivationFunction = ACTIVATIONS[act]
    shape_idx = ctx.b.const_int32([n, *full, o], f"{node.name}_output_shape")
    ctx.b.op("TRANSPOSE_CONV", [shape_idx, w_idx, x.index, b_idx], [raw.index], opts,
             version=4 if act != "NONE" else None)
    if cropped:
        begin = [0, int(padding[0]), int(padding[1]), 0]
        end = [n, int(padding[0]) + out4[2], int(padding[1]) + out4[3], o]
        ctx.b.op("STRIDED_SLICE", [raw.index, ctx.b.const_int32(begin, f"{node.name}_crop_begin"),
                                   ctx.b.const_int32(end, f"{node.name}_crop_end"),
                                   ctx.b.const_int32([1, 1, 1, 1], f"{node.name}_crop_strides")],
                 [out.index], tfl.StridedSliceOptionsT())
    _store_output(ctx, node, out_node, out, out_shape)


def lower_convolution(ctx: ConversionContext, node) -> None:
    if conv_args(node)[6]:
        convert_transposed_convolution(ctx, node)
    else:
        convert_convolution(ctx, node)


def pad_pairs(node, rank):
    """[(before, after)] per PyTorch dim from ``constant_pad_nd``'s list (last dim first)."""
    pad = list(node.args[1])
    pairs = [(0, 0)] * rank
    for i in range(len(pad) // 2):
        pairs[rank - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return pairs


def pad_folds_into_conv(node) -> bool:
    """A ``constant_pad_nd`` with value 0 of the spatial dims only, whose one user is a
    (not transposed) conv reading it as its input: the conv lowering pads instead (SAME or one
    PAD), and the pad lowers to nothing."""
    if not isinstance(node, torch.fx.Node) or node_op(node) != "aten.constant_pad_nd.default":
        return False
    value = node.args[2] if len(node.args) > 2 else 0.0
    users = list(node.users)
    if value != 0 or len(users) != 1 or node_op(users[0]) != "aten.convolution.default":
        return False
    conv = users[0]
    if conv.args[0] is not node or conv_args(conv)[6]:
        return False
    pairs = pad_pairs(node, len(shape(node)))
    return all(p == (0, 0) for p in pairs[:2]) and all(b >= 0 and a >= 0 for b, a in pairs)


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
    if len(shape(x)) not in (3, 4):
        return f"conv of a rank-{len(shape(x))} input: only conv1d and conv2d are lowered"
    if transposed:
        reason = transposed_conv_limits(node, kernel)
        if reason is not None:
            return reason
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
    if node_op(w).endswith("per_tensor.default") and int(w.args[2]) != 0:
        return "conv weights must be symmetric (zero point 0)"
    return None


def transposed_conv_limits(node, kernel) -> Optional[str]:
    """[NXP-tconv]: ExecuTorch 1.5.1 backends/nxp convolution_converter.py
    ``_is_supported_on_target_transp_conv`` (L162-216) and ``_is_supported_in_IR`` (L238-268):
    groups 1 (no transposed depthwise), no dilation, kernel <= 4096, stride <= kernel and <= 2,
    padding < kernel, and the conv kernel volume limit (checked by the caller)."""
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = node.args[:9]
    if groups != 1:
        return f"transposed conv with groups {groups}: the NPU runs transposed convs with groups 1 only"
    if max(dilation) != 1:
        return f"transposed conv with dilation {list(dilation)}: the NPU's transposed conv has no dilation"
    for s_, k in zip(stride, kernel):
        if s_ > k or s_ > TRANSPOSED_CONV_MAX_STRIDE:
            return (f"transposed conv stride {list(stride)} with kernel {list(kernel)}: the NPU needs stride <= "
                    f"kernel and stride <= {TRANSPOSED_CONV_MAX_STRIDE}")
    for p, k in zip(padding, kernel):
        if p >= k:
            return f"transposed conv padding {list(padding)} with kernel {list(kernel)}: the NPU needs padding < kernel"
    return None


OPS = (
    OpLowering("conv", ("aten.convolution.default",), lower_convolution, conv_limits,
               rules=("conv", "conv_same", "conv_transpose"),
               tflite=("CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "TRANSPOSE_CONV", "STRIDED_SLICE")),
)
