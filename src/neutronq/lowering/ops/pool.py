"""Pools and means: max_pool2d -> MAX_POOL_2D, avg_pool2d / adaptive_avg_pool2d -> AVERAGE_POOL_2D,
mean.dim -> MEAN.

Padding: SAME only when exactly equivalent (max pool; average pool that excludes the padding);
an average pool that counts the padding gets a PAD with the zero point + VALID.
"""

from __future__ import annotations

from neutronq.lowering.context import ConversionContext
from neutronq.lowering.layout import transpose_to
from neutronq.lowering.ops._padding import same_equivalent
from neutronq.lowering.ops.conv import pad_nhwc
from neutronq.lowering.tflite_builder import tfl


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


def convert_mean(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    rank = len(x.shape)
    dims = sorted({int(d) % rank for d in node.args[1]})
    keepdim = bool(node.args[2]) if len(node.args) > 2 else bool(node.kwargs.get("keepdim", False))
    axes = [x.perm.index(d) for d in dims]
    out_shape = ctx.out_shape(node)
    qp = ctx.out_qparams(node)
    opts = tfl.ReducerOptionsT()
    opts.keepDims = keepdim
    if keepdim:
        out = ctx.new_tensor(out_shape, qp, node.name)  # same rank, same layout
        ctx.b.op("MEAN", [x.index, ctx.b.const_int32(axes, f"{node.name}_axes")], [out.index], opts)
        ctx.values[node] = out
        return
    # the reduced tensor keeps the input's stored order of the remaining dims
    kept = [p for p in x.perm if p not in dims]
    renumber = {d: i for i, d in enumerate(sorted(kept))}
    perm_mid = tuple(renumber[p] for p in kept)
    mid_stored = [out_shape[p] for p in perm_mid]
    mid = ctx.scratch(mid_stored, qp, f"{node.name}_mean")
    ctx.b.op("MEAN", [x.index, ctx.b.const_int32(axes, f"{node.name}_axes")], [mid], opts)
    out = ctx.new_tensor(out_shape, qp, node.name)
    ctx.relayout(mid, mid_stored, [("transpose", transpose_to(perm_mid, out.perm))], qp, node.name, dst=out.index)
    ctx.values[node] = out


CONVERTERS = {
    "aten.max_pool2d_with_indices.default": convert_max_pool,
    "aten.max_pool2d.default": convert_max_pool,
    "aten.avg_pool2d.default": convert_avg_pool,
    "aten._adaptive_avg_pool2d.default": convert_adaptive_avg_pool,
    "aten.mean.dim": convert_mean,
}
