"""The matrix multiply of two activations (attention's ``q @ k.transpose(-2, -1)`` and
``scores @ v``) -> BATCH_MATMUL, and the ``expand_copy`` that the edge dialect puts before it.

``torch.matmul`` of rank 3 / 4 reaches the edge dialect as ``expand_copy`` -> ``view_copy`` (to
rank 3) -> ``bmm`` -> ``view_copy``; rank 2 as ``mm`` (lowered here when neither operand is a
constant weight; ``fully_connected`` hands it over). The operands' layouts are absorbed into
BATCH_MATMUL's ``adj_x`` / ``adj_y``: a [B, M, K] operand stored as [B, K, M] (a transposed key,
or a rank-3 tensor in the channels-last layout) is read transposed, so ``q @ k.transpose(-2, -1)``
needs no TRANSPOSE. The output is stored in PyTorch's order [B, M, N].

NPU limits [NXP-bmm] (ExecuTorch 1.5.1, ``backends/nxp/backend/ir/converter/node_converters/
ops_converters/bmm_converter.py`` L28-60, the converter of NXP's reference backend, which emits
BatchMatMul with ``adj_x`` / ``adj_y`` itself): both inputs rank 3, int8 in and out, and both
input zero points 0 ("Neutron requirement"). neutronq's quantizer gives matmul inputs symmetric
parameters (rule ``matmul``, ``SymmetricInputs``), so this holds for models it quantizes.
NXP's op-support table (``docs/source/backends/nxp/op-support.csv``) adds "width and channels dim
of both args % 8 = 0"; the converter's code does not check it, nor does neutronq.
"""

from __future__ import annotations

from typing import Optional

from neutronq.fx import node_op
from neutronq.lowering.context import ConversionContext, TRef
from neutronq.lowering.limits import input_qparams, shape
from neutronq.lowering.tflite_builder import tfl
from neutronq.lowering.ops.base import OpLowering

__all__ = ["convert_bmm", "convert_mm_of_activations", "matmul_limits", "OPS"]

BMM_RANK = 3  # [NXP-bmm]


def _operand(ctx: ConversionContext, node) -> tuple[TRef, bool]:
    """A rank-3 operand stored as [B, rows, cols] (False) or [B, cols, rows] (True: BATCH_MATMUL
    reads it transposed)."""
    t = ctx.stored(node)
    if t.perm == (0, 1, 2):
        return t, False
    if t.perm == (0, 2, 1):
        return t, True
    return ctx.in_layout(node, (0, 1, 2)), False


def _batch_matmul(ctx: ConversionContext, node, a: TRef, adj_x: bool, b: TRef, adj_y: bool,
                  out_shape) -> TRef:
    out = ctx.new_tensor(out_shape, ctx.out_qparams(node), node.name, perm=tuple(range(len(out_shape))))
    opts = tfl.BatchMatMulOptionsT()
    opts.adjX, opts.adjY = adj_x, adj_y
    opts.asymmetricQuantizeInputs = False
    ctx.b.op("BATCH_MATMUL", [a.index, b.index], [out.index], opts)
    return out


def convert_bmm(ctx: ConversionContext, node) -> None:
    (a, adj_x), (b, adj_y) = _operand(ctx, node.args[0]), _operand(ctx, node.args[1])
    ctx.values[node] = _batch_matmul(ctx, node, a, adj_x, b, adj_y, ctx.out_shape(node))


def convert_mm_of_activations(ctx: ConversionContext, node) -> None:
    """[M, K] @ [K, N] as a rank-3 BATCH_MATMUL of batch 1 ([NXP-bmm]: rank 3)."""
    ops = []
    for arg in node.args[:2]:
        t = ctx.stored(arg)
        transposed = t.perm == (1, 0)  # e.g. y.t(): read with adj
        # a rank-2 tensor and its rank-3 view of batch 1 hold the same bytes (a RESHAPE)
        t3 = ctx.view(t, (1, *t.shape), name=f"{node.name}_{arg.name}_3d",
                      perm=(0, 2, 1) if transposed else (0, 1, 2))
        ops.append((t3, transposed))
    (a, adj_x), (b, adj_y) = ops
    m, n = ctx.out_shape(node)
    out = _batch_matmul(ctx, node, a, adj_x, b, adj_y, (1, m, n))
    ctx.values[node] = ctx.free_view(out, (m, n), name=f"{node.name}_2d")


def convert_expand(ctx: ConversionContext, node) -> None:
    # within the limits, an expand to the shape it already has: nothing to do
    ctx.values[node] = ctx.stored(node.args[0])


# --- matmul of activations [NXP-bmm] ----------------------------------------------------------
def matmul_limits(node, spec, ep, res) -> Optional[str]:
    """bmm, or mm of two activations (run as a rank-3 bmm of batch 1)."""
    if node_op(node) == "aten.bmm.default":
        for a in node.args[:2]:
            if len(shape(a)) != BMM_RANK:
                return f"batch matmul of a rank-{len(shape(a))} operand: the NPU's takes rank {BMM_RANK}"
    for i, a in enumerate(node.args[:2]):
        qp = input_qparams(a)
        if qp is None:
            return f"matmul operand {i} ({a.name}) is not an int8 tensor"
        if qp[1] != 0:
            return (f"matmul operand {i} has zero point {qp[1]}: the NPU's batch matmul needs both input "
                    "zero points 0 (quantize it with NeutronQuantizer, whose matmul rule gives symmetric inputs)")
    return None


def expand_limits(node, spec, ep, res) -> Optional[str]:
    if tuple(shape(node)) != tuple(shape(node.args[0])):
        return (f"expand from {list(shape(node.args[0]))} to {list(shape(node))}: only an expand that keeps "
                "the shape (as matmul's decomposition emits) is lowered")
    return None


OPS = (
    OpLowering("bmm", ("aten.bmm.default",), convert_bmm, matmul_limits, rules=("matmul",),
               tflite=("BATCH_MATMUL",)),
    OpLowering("expand", ("aten.expand_copy.default",), convert_expand, expand_limits, rules=("matmul",)),
)
