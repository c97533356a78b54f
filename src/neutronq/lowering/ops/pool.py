"""Pools: max_pool2d -> MAX_POOL_2D, avg_pool2d / adaptive_avg_pool2d -> AVERAGE_POOL_2D (means
and other reductions: ``reduce.py``).

Padding: SAME only when exactly equivalent (max pool; average pool that excludes the padding);
an average pool that counts the padding gets a PAD with the zero point + VALID.
"""

from __future__ import annotations

from typing import Optional

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.limits import equal_io, shape
from neutronq.lowering.ops._padding import same_equivalent, torch_out_size
from neutronq.lowering.ops.conv import pad_nhwc
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.ops.base import OpLowering


def _pair(v, default=None):
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        return default
    if isinstance(v, int):
        return [v, v]
    return [int(v[0]), int(v[-1])] if len(v) in (1, 2) else list(v)


def max_pool_params(node):
    kernel = _pair(node.args[1])
    stride = _pair(node.args[2] if len(node.args) > 2 else None, kernel)
    padding = _pair(node.args[3] if len(node.args) > 3 else 0)
    dilation = _pair(node.args[4] if len(node.args) > 4 else 1)
    ceil_mode = bool(node.args[5]) if len(node.args) > 5 else False
    return kernel, stride, padding, dilation, ceil_mode


def avg_pool_params(node):
    kernel = _pair(node.args[1])
    stride = _pair(node.args[2] if len(node.args) > 2 else None, kernel)
    padding = _pair(node.args[3] if len(node.args) > 3 else 0)
    ceil_mode = bool(node.args[4]) if len(node.args) > 4 else False
    count_include_pad = bool(node.args[5]) if len(node.args) > 5 else True
    divisor_override = node.args[6] if len(node.args) > 6 else None
    return kernel, stride, padding, ceil_mode, count_include_pad, divisor_override


def adaptive_kernel(in_hw, out_hw):
    """(kernel, stride) of an adaptive average pool that is a plain pool, else None."""
    if any(i % o for i, o in zip(in_hw, out_hw)):
        return None
    k = [i // o for i, o in zip(in_hw, out_hw)]
    return k, k


def _pool(ctx, node, code, src, kernel, stride, padding_mode, out_node):
    out = ctx.new_tensor(ctx.out_shape(out_node), ctx.out_qparams(out_node), out_node.name)
    opts = tfl.Pool2DOptionsT()
    opts.padding = padding_mode
    opts.strideH, opts.strideW = stride
    opts.filterHeight, opts.filterWidth = kernel
    opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
    ctx.b.op(code, [src.index], [out.index], opts)
    ctx.values[node] = out
    ctx.values[out_node] = out
    ctx.done.add(out_node)


def convert_max_pool(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    kernel, stride, padding, dilation, _ = max_pool_params(node)
    out_node = node
    if node.target.__name__.endswith("with_indices.default"):
        out_node = next(u for u in node.users if u.args[1] == 0)  # getitem 0: the values
    mode = tfl.Padding.SAME if any(padding) else tfl.Padding.VALID
    _pool(ctx, node, "MAX_POOL_2D", x, kernel, stride, mode, out_node)


def convert_avg_pool(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    kernel, stride, padding, _, count_include_pad, _ = avg_pool_params(node)
    mode, src = tfl.Padding.VALID, x
    if any(padding):
        if count_include_pad:
            src = pad_nhwc(ctx, x, padding[0], padding[0], padding[1], padding[1], f"{node.name}_pad")
        else:
            mode = tfl.Padding.SAME
    _pool(ctx, node, "AVERAGE_POOL_2D", src, kernel, stride, mode, node)


def convert_adaptive_avg_pool(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    kernel, stride = adaptive_kernel(x.shape[2:], ctx.out_shape(node)[2:])
    _pool(ctx, node, "AVERAGE_POOL_2D", x, kernel, stride, tfl.Padding.VALID, node)


# --- pools [NXP-shared] ---------------------------------------------------------------------------
def max_pool_limits(node, spec, ep, res) -> Optional[str]:
    kernel, stride, padding, dilation, ceil_mode = max_pool_params(node)
    in_hw = shape(node.args[0])[2:]
    users = list(node.users)
    out_node = node
    if node_op(node).endswith("with_indices.default"):
        if any(u.args[1] != 0 for u in users):
            return "max pool indices are used: the NPU computes the values only"
        out_node = users[0]
    if max(dilation) != 1:
        return "max pool with dilation"
    out_hw = shape(out_node)[2:]
    floor_hw = [torch_out_size(s, k, st, p, 1, False) for s, k, st, p in zip(in_hw, kernel, stride, padding)]
    if ceil_mode and list(out_hw) != floor_hw:
        return "max pool with ceil_mode that changes the output size"
    if any(padding) and not all(same_equivalent(s, k, st, p, 1, o) for s, k, st, p, o in
                                zip(in_hw, kernel, stride, padding, out_hw)):
        return (f"max pool padding {padding} is not TFLite SAME padding for input {list(in_hw)}, "
                f"kernel {kernel}, stride {stride}")
    return equal_io(node, out_node)


def avg_pool_limits(node, spec, ep, res) -> Optional[str]:
    kernel, stride, padding, ceil_mode, count_include_pad, divisor_override = avg_pool_params(node)
    if divisor_override is not None:
        return "avg pool with divisor_override"
    in_hw = shape(node.args[0])[2:]
    out_hw = shape(node)[2:]
    floor_hw = [torch_out_size(s, k, st, p, 1, False) for s, k, st, p in zip(in_hw, kernel, stride, padding)]
    if ceil_mode and list(out_hw) != floor_hw:
        return "avg pool with ceil_mode that changes the output size"
    if any(padding) and not count_include_pad and not all(
            same_equivalent(s, k, st, p, 1, o) for s, k, st, p, o in zip(in_hw, kernel, stride, padding, out_hw)):
        return "avg pool excluding padding that is not TFLite SAME padding"
    return equal_io(node)


def adaptive_avg_pool_limits(node, spec, ep, res) -> Optional[str]:
    if adaptive_kernel(shape(node.args[0])[2:], shape(node)[2:]) is None:
        return "adaptive avg pool whose input size is not a multiple of its output size"
    return equal_io(node)


OPS = (
    OpLowering("max_pool2d", ("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default"), convert_max_pool,
               max_pool_limits, rules=("pool", "pool1d"), tflite=("MAX_POOL_2D",)),
    OpLowering("avg_pool2d", ("aten.avg_pool2d.default",), convert_avg_pool, avg_pool_limits, rules=("pool", "pool1d"),
               tflite=("AVERAGE_POOL_2D", "PAD")),
    OpLowering("adaptive_avg_pool2d", ("aten._adaptive_avg_pool2d.default",), convert_adaptive_avg_pool,
               adaptive_avg_pool_limits, rules=("pool",), tflite=("AVERAGE_POOL_2D",)),
)
