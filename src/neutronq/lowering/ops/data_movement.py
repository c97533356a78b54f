"""Data movement: view / reshape / flatten / unflatten / squeeze / unsqueeze (RESHAPE, in a
layout that keeps the bytes in place when there is one, else with TRANSPOSEs), permute /
transpose (no operator where the output can be the input's tensor read through the permuted dims;
a reader that needs another layout transposes it), slice (STRIDED_SLICE; unbind is slices +
squeezes at the edge), split / chunk (SPLIT, SPLIT_V), cat (CONCATENATION, in its inputs' shared
layout), constant_pad_nd (PAD; nothing when the conv after it pads), F.pad reflect (MIRROR_PAD),
and identities (clone, dropout: no operator).

Their int8 output shares the input's parameters (the quantizer's rule); if the quantize after
them differs, a QUANTIZE follows (see ``quantize.py``).
"""

from __future__ import annotations

from typing import Optional

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.edge import is_dq_of_constant, output_qparams
from neutronq.lowering.layout import canonical_perm
from neutronq.lowering.limits import equal_io, equal_io_limit, input_qparams, same_qparams, shape
from neutronq.lowering.ops.conv import pad_folds_into_conv, pad_pairs
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


def convert_select(ctx: ConversionContext, node) -> None:
    """``x.select(dim, i)`` (``x[:, 0]``, a ViT's class token): STRIDED_SLICE of ``[i, i + 1)``
    on ``dim``, then the view without that dim (a RESHAPE at most)."""
    x = ctx.act(node.args[0])
    rank = len(x.shape)
    dim = int(node.args[1]) % rank
    size = x.shape[dim]
    index = int(node.args[2])
    index = index + size if index < 0 else index
    axis = x.perm.index(dim)
    stored = ctx.b.shape_of(x.index)
    begin, ends = [0] * rank, list(stored)
    begin[axis], ends[axis] = index, index + 1
    kept_shape = list(x.shape)
    kept_shape[dim] = 1
    kept = ctx.new_tensor(kept_shape, x.qparams, f"{node.name}_slice", perm=x.perm)
    ctx.b.op("STRIDED_SLICE", [x.index, ctx.b.const_int32(begin, f"{node.name}_begin"),
                               ctx.b.const_int32(ends, f"{node.name}_end"),
                               ctx.b.const_int32([1] * rank, f"{node.name}_strides")],
             [kept.index], tfl.StridedSliceOptionsT())
    ctx.values[node] = ctx.free_view(kept, ctx.out_shape(node), name=node.name)


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


def convert_pad(ctx: ConversionContext, node) -> None:
    if pad_folds_into_conv(node):
        return  # the conv after it pads (conv.pad_folds_into_conv)
    x = ctx.act(node.args[0])
    pairs = pad_pairs(node, len(x.shape))
    out = ctx.new_tensor(ctx.out_shape(node), x.qparams, node.name)
    stored_pairs = [list(pairs[p]) for p in x.perm]
    ctx.b.op("PAD", [x.index, ctx.b.const_int32(stored_pairs, f"{node.name}_paddings")], [out.index],
             tfl.PadOptionsT())
    ctx.values[node] = out


def pad_mode(node) -> str:
    return node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")


def convert_mirror_pad(ctx: ConversionContext, node) -> None:
    """``F.pad(x, pad, mode="reflect")`` (``aten.pad.default``, kept whole) -> MIRROR_PAD REFLECT."""
    x = ctx.act(node.args[0])
    pairs = pad_pairs(node, len(x.shape))
    out = ctx.new_tensor(ctx.out_shape(node), x.qparams, node.name)  # no requantization (equal_io)
    opts = tfl.MirrorPadOptionsT()
    opts.mode = tfl.MirrorPadMode.REFLECT
    stored_pairs = [list(pairs[p]) for p in x.perm]
    ctx.b.op("MIRROR_PAD", [x.index, ctx.b.const_int32(stored_pairs, f"{node.name}_paddings")], [out.index], opts)
    ctx.values[node] = out


def split_outputs(node) -> dict:
    """{output index: its ``getitem`` node} of a multi-output op."""
    return {int(u.args[1]): u for u in node.users if node_op(u) == "getitem"}


def convert_split(ctx: ConversionContext, node) -> None:
    """``split_with_sizes_copy`` (split, chunk) -> SPLIT (equal sizes) or SPLIT_V along the
    stored axis of ``dim``; every output carries the input's parameters (SPLIT does not
    requantize; the quantizer's ``split`` rule shares them)."""
    x = ctx.act(node.args[0])
    sizes = [int(v) for v in node.args[1]]
    rank = len(x.shape)
    dim = int(node.args[2]) % rank if len(node.args) > 2 else 0
    axis = x.perm.index(dim)
    items = split_outputs(node)
    outs = []
    for i, size in enumerate(sizes):
        shape_i = list(x.shape)
        shape_i[dim] = size
        t = ctx.new_tensor(shape_i, x.qparams, f"{node.name}_{i}")
        outs.append(t)
        if i in items:
            ctx.values[items[i]] = t
            ctx.done.add(items[i])
    axis_idx = ctx.b.const_int32([axis], f"{node.name}_axis")  # one element (SPLIT reads [0])
    if len(set(sizes)) == 1:
        opts = tfl.SplitOptionsT()
        opts.numSplits = len(sizes)
        ctx.b.op("SPLIT", [axis_idx, x.index], [t.index for t in outs], opts)
    else:
        opts = tfl.SplitVOptionsT()
        opts.numSplits = len(sizes)
        ctx.b.op("SPLIT_V", [x.index, ctx.b.const_int32(sizes, f"{node.name}_sizes"), axis_idx],
                 [t.index for t in outs], opts)


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


def pad_mode_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-pad] ExecuTorch 1.5.1 backends/nxp pad_converter.py L35-60: ``aten.pad`` only in mode
    "reflect" (MIRROR_PAD REFLECT); "constant" decomposes to ``constant_pad_nd`` (the ``pad``
    lowering), "replicate" and "circular" have no conversion. MIRROR_PAD refuses an output zero
    point other than the input's (LiteRT mirror_pad.cc), and shares the scale [NXP-shared]."""
    mode = pad_mode(node)
    if mode != "reflect":
        return (f"F.pad mode {mode!r}: the NPU pads in mode 'reflect' (MIRROR_PAD) and with zeros "
                "(constant_pad_nd) only")
    rank = len(shape(node.args[0]))
    if any(b < 0 or a < 0 for b, a in pad_pairs(node, rank)):
        return "negative padding (cropping)"
    return equal_io(node)


def split_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-shared] every output with the input's parameters (SPLIT / SPLIT_V copy int8 values;
    NXP's flow splits into slices, each with shared parameters: decompose_split_to_slices_pass.py,
    slice_copy_tensor_converter.py)."""
    if any(int(v) == 0 for v in node.args[1]):
        return "split into an empty piece"
    qi = input_qparams(node.args[0])
    for i, item in sorted(split_outputs(node).items()):
        qo = output_qparams(item)
        if qo is not None and not same_qparams(qi, qo):
            return (f"split output {i} needs the input's quantization parameters on the NPU "
                    f"(input {qi}, output {qo}); quantize it with NeutronQuantizer, whose rule shares them")
    return None


def slice_limits(node, spec, ep, res) -> Optional[str]:
    step = int(node.args[4]) if len(node.args) > 4 else 1
    if step < 1:
        return "slice with a non-positive step"
    return equal_io(node)


OPS = (
    OpLowering("view", ("aten.view_copy.default", "aten.squeeze_copy.dims", "aten.unsqueeze_copy.default"),
               convert_view, equal_io_limit, rules=("data_movement", "reshape_transpose"),
               tflite=("RESHAPE", "TRANSPOSE")),
    OpLowering("permute", ("aten.permute_copy.default",), convert_permute, equal_io_limit,
               rules=("data_movement", "reshape_transpose"), tflite=("TRANSPOSE", "RESHAPE")),
    OpLowering("slice", ("aten.slice_copy.Tensor",), convert_slice, slice_limits, rules=("data_movement", "split"),
               tflite=("STRIDED_SLICE",)),
    OpLowering("select", ("aten.select_copy.int",), convert_select, equal_io_limit, rules=("reshape_transpose",),
               tflite=("STRIDED_SLICE", "RESHAPE")),
    OpLowering("cat", ("aten.cat.default",), convert_cat, cat_limits, rules=("cat",), tflite=("CONCATENATION",)),
    OpLowering("pad", ("aten.constant_pad_nd.default",), convert_pad, pad_limits, rules=("pad",), tflite=("PAD",)),
    # ops-structure: F.pad(mode="reflect") kept from decomposition (to_edge turns it into arange,
    # abs, sub and index.Tensor)
    OpLowering("pad_reflect", ("aten.pad.default",), convert_mirror_pad, pad_mode_limits, rules=("pad",),
               tflite=("MIRROR_PAD",), preserve=("aten.pad.default",)),
    OpLowering("split", ("aten.split_with_sizes_copy.default",), convert_split, split_limits, rules=("split",),
               tflite=("SPLIT", "SPLIT_V")),
    OpLowering("identity", ("aten.clone.default", "dim_order_ops._clone_dim_order.default", "aten.alias_copy.default",
                            "aten.dropout.default"), convert_identity, NO_PUBLISHED_LIMIT, rules=("data_movement",)),
)
