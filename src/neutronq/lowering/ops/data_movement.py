"""Data movement: view / reshape / flatten / squeeze (RESHAPE, in a layout that keeps the bytes
in place when there is one, else with a TRANSPOSE), permute (no operator: the output is the
input's tensor read through the permuted dims; a reader that needs another layout transposes
it), slice (STRIDED_SLICE), cat (CONCATENATION, in its inputs' shared layout), constant_pad_nd
(PAD), and identities (clone, dropout: no operator).

Their int8 output shares the input's parameters (the quantizer's rule); if the quantize after
them differs, a QUANTIZE follows (see ``quantize.py``).
"""

from __future__ import annotations

from typing import Optional

from neutronq.lowering.context import ConversionContext
from neutronq.lowering.edge import is_dq_of_constant, output_qparams
from neutronq.lowering.layout import canonical_perm
from neutronq.lowering.limits import equal_io, equal_io_limit, input_qparams, same_qparams, shape
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.ops.base import NO_PUBLISHED_LIMIT, OpLowering


def convert_view(ctx: ConversionContext, node) -> None:
    x = ctx.stored(node.args[0])
    ctx.values[node] = ctx.free_view(x, ctx.out_shape(node), name=node.name)


def convert_identity(ctx: ConversionContext, node) -> None:
    ctx.values[node] = ctx.stored(node.args[0])


def convert_permute(ctx: ConversionContext, node) -> None:
    # no operator: the output is the input's stored tensor read through the permuted dims; a
    # reader that needs another layout transposes it (ctx.act / ctx.in_layout)
    ctx.values[node] = ctx.permuted(ctx.stored(node.args[0]), node.args[1])


def convert_slice(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    rank = len(x.shape)
    dim = int(node.args[1]) % rank if len(node.args) > 1 else 0
    size = x.shape[dim]
    start = node.args[2] if len(node.args) > 2 and node.args[2] is not None else 0
    end = node.args[3] if len(node.args) > 3 and node.args[3] is not None else size
    step = int(node.args[4]) if len(node.args) > 4 else 1
    start = min(max(start + size if start < 0 else start, 0), size)
    end = min(max(end + size if end < 0 else end, 0), size)
    axis = x.perm.index(dim)
    stored = ctx.b.shape_of(x.index)
    begin = [0] * rank
    ends = list(stored)
    strides = [1] * rank
    begin[axis], ends[axis], strides[axis] = start, end, step
    out = ctx.new_tensor(ctx.out_shape(node), x.qparams, node.name)
    ctx.b.op("STRIDED_SLICE", [x.index, ctx.b.const_int32(begin, f"{node.name}_begin"),
                               ctx.b.const_int32(ends, f"{node.name}_end"),
                               ctx.b.const_int32(strides, f"{node.name}_strides")],
             [out.index], tfl.StridedSliceOptionsT())
    ctx.values[node] = out


def convert_cat(ctx: ConversionContext, node) -> None:
    # in the layout its (non-constant) inputs share, else canonical
    perms = {ctx.stored(a).perm for a in node.args[0] if not is_dq_of_constant(a, ctx.ep)}
    rank = len(ctx.out_shape(node))
    perm = perms.pop() if len(perms) == 1 else canonical_perm(rank)
    xs = [ctx.in_layout(a, perm) for a in node.args[0]]
    dim = int(node.args[1]) % rank if len(node.args) > 1 else 0
    out = ctx.output(node, perm=perm)
    xs = [ctx.requantize(x, out.qparams, f"{node.name}_in{i}") for i, x in enumerate(xs)]
    opts = tfl.ConcatenationOptionsT()
    opts.axis = out.perm.index(dim)
    opts.fusedActivationFunction = tfl.ActivationFunctionType.NONE
    ctx.b.op("CONCATENATION", [x.index for x in xs], [out.index], opts)
    ctx.values[node] = out


def pad_pairs(node, rank):
    """[(before, after)] per PyTorch dim from ``constant_pad_nd``'s list (last dim first)."""
    pad = list(node.args[1])
    pairs = [(0, 0)] * rank
    for i in range(len(pad) // 2):
        pairs[rank - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return pairs


def convert_pad(ctx: ConversionContext, node) -> None:
    x = ctx.act(node.args[0])
    pairs = pad_pairs(node, len(x.shape))
    out = ctx.new_tensor(ctx.out_shape(node), x.qparams, node.name)
    stored_pairs = [list(pairs[p]) for p in x.perm]
    ctx.b.op("PAD", [x.index, ctx.b.const_int32(stored_pairs, f"{node.name}_paddings")], [out.index],
             tfl.PadOptionsT())
    ctx.values[node] = out


# --- data movement [NXP-shared] --------------------------------------------------------------------
def cat_limits(node, spec, ep, res) -> Optional[str]:
    qo = output_qparams(node)
    for a in node.args[0]:
        qi = input_qparams(a)
        if not same_qparams(qi, qo):
            return f"cat inputs and output need equal quantization parameters on the NPU ({qi} vs {qo})"
    return None


def pad_limits(node, spec, ep, res) -> Optional[str]:
    value = node.args[2] if len(node.args) > 2 else 0.0
    if value != 0:
        return f"constant pad with value {value}: the NPU pads with the zero point (value 0) only"
    if any(b < 0 or a < 0 for b, a in pad_pairs(node, len(shape(node.args[0])))):
        return "negative padding (cropping)"
    return equal_io(node)


def slice_limits(node, spec, ep, res) -> Optional[str]:
    step = int(node.args[4]) if len(node.args) > 4 else 1
    if step < 1:
        return "slice with a non-positive step"
    return equal_io(node)


OPS = (
    OpLowering("view", ("aten.view_copy.default", "aten.squeeze_copy.dims", "aten.unsqueeze_copy.default"),
               convert_view, equal_io_limit, rules=("data_movement",), tflite=("RESHAPE", "TRANSPOSE")),
    OpLowering("permute", ("aten.permute_copy.default",), convert_permute, equal_io_limit, rules=("data_movement",),
               tflite=("TRANSPOSE", "RESHAPE")),
    OpLowering("slice", ("aten.slice_copy.Tensor",), convert_slice, slice_limits, rules=("data_movement",),
               tflite=("STRIDED_SLICE",)),
    OpLowering("cat", ("aten.cat.default",), convert_cat, cat_limits, rules=("cat",), tflite=("CONCATENATION",)),
    OpLowering("pad", ("aten.constant_pad_nd.default",), convert_pad, pad_limits, rules=("pad",), tflite=("PAD",)),
    OpLowering("identity", ("aten.clone.default", "dim_order_ops._clone_dim_order.default", "aten.alias_copy.default",
                            "aten.dropout.default"), convert_identity, NO_PUBLISHED_LIMIT, rules=("data_movement",)),
)
