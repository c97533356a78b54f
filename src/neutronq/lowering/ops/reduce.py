"""Reductions over any set of dims: mean -> MEAN, sum -> MEAN with a scaled output, amax / amin /
max / min (whole tensor) and the values of max.dim / min.dim -> REDUCE_MAX / REDUCE_MIN.

The reduced axes are the input's stored axes (channels last for rank >= 3). With keepdim the
result keeps the input's stored order; without it the remaining dims keep the input's stored
order and a TRANSPOSE (or RESHAPE) brings the result to the canonical layout when that differs.

sum: LiteRT's reference SUM kernel is wrong for int8 (128-166 steps; the optimized kernel is
right; measured, notes/ops/REPORT.md). sum = N x mean, so a MEAN whose output tensor has the
sum's zero point and scale s_sum / N writes exactly the int8 values of the sum quantized with
(s_sum, zp_sum) (measured within one step); a RESHAPE then hands those bytes on under the sum's
own parameters, for the ops that read it.

Sources of the limits:
  [NXP-reduce] ExecuTorch 1.5.1, backends/nxp/backend/ir/converter/node_converters/ops_converters/
               mean_dim_converter.py L30-66, sum_dim_int_list_converter.py L29-60,
               amax_converter.py and amin_converter.py L29-60: input and output share their
               quantization parameters (``_has_shared_q_params_if_quantized``, node_converter.py
               L229-258); no limit on the reduced dims in that code (NXP's op-support.csv says
               "4D tensor only, dims = [-1,-2] or [-2,-1]" for mean). No converter for max.dim.
  [TFL-ref]    LiteRT 2.3.0 reference kernels, measured: REDUCE_MAX / REDUCE_MIN refuse an output
               scale other than the input's (reduce.cc); MEAN requantizes (any axes, <= 1 step).
"""

from __future__ import annotations

from math import prod
from typing import Optional

from neutronq.fx import arg, node_op
from neutronq.lowering.context import ConversionContext
from neutronq.lowering.layout import transpose_to
from neutronq.lowering.limits import equal_io, shape
from neutronq.lowering.tflite_builder import QParams, tfl
from neutronq.lowering.ops.base import OpLowering

_WHOLE = {"aten.mean.default", "aten.max.default", "aten.min.default"}  # reduce every dim
_WITH_INDICES = {"aten.max.dim", "aten.min.dim"}  # (values, indices)


def reduce_dims(node) -> list[int]:
    """The PyTorch dims ``node`` reduces (every dim for an empty / absent dim list)."""
    rank = len(shape(node.args[0]))
    name = node_op(node)
    if name in _WHOLE:
        return list(range(rank))
    dims = arg(node, 1, "dim", None)
    if isinstance(dims, int):
        dims = [dims]
    if not dims:
        return list(range(rank))
    return sorted({int(d) % rank for d in dims})


def _keepdim(node) -> bool:
    return node_op(node) not in _WHOLE and bool(arg(node, 2, "keepdim", False))


def values_node(node):
    """The node carrying a reduction's result: ``getitem 0`` of max.dim / min.dim, else itself."""
    if node_op(node) in _WITH_INDICES:
        return next(u for u in node.users if node_op(u) == "getitem" and u.args[1] == 0)
    return node


def _reduce(ctx: ConversionContext, node, code: str, op_qparams: Optional[QParams] = None) -> None:
    """``code`` over the node's dims into a tensor of ``op_qparams`` (the result's by default),
    the result in the canonical layout with its own parameters."""
    x = ctx.act(node.args[0])
    dims = reduce_dims(node)
    keepdim = _keepdim(node)
    out_node = values_node(node)
    out_shape = ctx.out_shape(out_node)
    qp = ctx.out_qparams(out_node)
    op_qparams = op_qparams or qp
    if keepdim:
        perm_mid = x.perm  # same rank, the input's stored order
    else:
        kept = [p for p in x.perm if p not in dims]
        renumber = {d: i for i, d in enumerate(sorted(kept))}
        perm_mid = tuple(renumber[p] for p in kept)
    mid_stored = [out_shape[p] for p in perm_mid]
    out = ctx.new_tensor(out_shape, qp, out_node.name)
    axes = ctx.b.const_int32([x.perm.index(d) for d in dims], f"{node.name}_axes")
    opts = tfl.ReducerOptionsT()
    opts.keepDims = keepdim
    if op_qparams == qp and tuple(perm_mid) == tuple(out.perm):
        ctx.b.op(code, [x.index, axes], [out.index], opts)
    else:
        mid = ctx.scratch(mid_stored, op_qparams, f"{node.name}_{code.lower()}")
        ctx.b.op(code, [x.index, axes], [mid], opts)
        ctx.relayout(mid, mid_stored, [("transpose", transpose_to(perm_mid, out.perm))], qp, out_node.name,
                     dst=out.index)
    ctx.values[node] = out
    if out_node is not node:
        ctx.values[out_node] = out
        ctx.done.add(out_node)


def convert_mean(ctx: ConversionContext, node) -> None:
    _reduce(ctx, node, "MEAN")


def convert_sum(ctx: ConversionContext, node) -> None:
    """MEAN into the sum's zero point and scale / N, read on with the sum's parameters."""
    count = prod(shape(node.args[0])[d] for d in reduce_dims(node))
    qp = ctx.out_qparams(node)
    _reduce(ctx, node, "MEAN", QParams.per_tensor(qp.scale[0] / count, qp.zero_point[0]))


def convert_reduce_max(ctx: ConversionContext, node) -> None:
    _reduce(ctx, node, "REDUCE_MAX")


def convert_reduce_min(ctx: ConversionContext, node) -> None:
    _reduce(ctx, node, "REDUCE_MIN")


def convert_max_min_dim(ctx: ConversionContext, node) -> None:
    _reduce(ctx, node, "REDUCE_MAX" if node_op(node) == "aten.max.dim" else "REDUCE_MIN")


# --- limits ----------------------------------------------------------------------------------------
def _reducible(node) -> Optional[str]:
    if not shape(node.args[0]):
        return f"{node_op(node)} of a 0-d tensor"
    return None


def shared_reduce_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-reduce] shared input and output parameters ([TFL-ref] REDUCE_MAX / REDUCE_MIN
    require them too); the values only of max.dim / min.dim."""
    reason = _reducible(node)
    if reason is not None:
        return reason
    if node_op(node) in _WITH_INDICES:
        if any(node_op(u) != "getitem" or u.args[1] != 0 for u in node.users) or not node.users:
            return f"{node_op(node)} whose indices are used: the NPU computes the values only"
    return equal_io(node, values_node(node))


def sum_limits(node, spec, ep, res) -> Optional[str]:
    """[NXP-reduce] NXP's SUM shares input and output parameters, which saturates a sum of N
    values at the input's range; neutronq gives the sum its own output parameters and lowers it
    as MEAN (output scale s_sum / N, which requantizes in TFLite [TFL-ref]) rather than SUM (wrong
    in LiteRT's reference kernels). Whether Neutron's MEAN requantizes is not published: not
    enforced, said in ``res.unenforced``."""
    reason = _reducible(node)
    if reason is None:
        res.unenforced.append(f"{node.name}: sum lowered as a requantizing MEAN; NXP's converters "
                              "publish mean and sum with shared input and output parameters only")
    return reason


OPS = (
    OpLowering("mean", ("aten.mean.dim", "aten.mean.default"), convert_mean, shared_reduce_limits,
               rules=("mean",), tflite=("MEAN",)),
    # --- reductions (ops-binary) ----------------------------------------------------------------
    OpLowering("sum", ("aten.sum.dim_IntList",), convert_sum, sum_limits, rules=("sum",),
               tflite=("MEAN", "RESHAPE")),
    OpLowering("reduce_max", ("aten.amax.default", "aten.max.default"), convert_reduce_max, shared_reduce_limits,
               rules=("amax",), tflite=("REDUCE_MAX",)),
    OpLowering("reduce_min", ("aten.amin.default", "aten.min.default"), convert_reduce_min, shared_reduce_limits,
               rules=("amin",), tflite=("REDUCE_MIN",)),
    OpLowering("max_dim", ("aten.max.dim", "aten.min.dim"), convert_max_min_dim, shared_reduce_limits,
               rules=("max_dim",), tflite=("REDUCE_MAX", "REDUCE_MIN")),
)
