"""One delegated partition (an edge ``ExportedProgram``) -> an int8 TFLite flatbuffer: the
input of NXP's Neutron converter.

The partition's inputs are int8 tensors (the outputs of quantize nodes left on the CPU), its
constants are the int8 / int32 weights and biases, its outputs int8 tensors. Dequantize nodes
only attach quantization parameters to those tensors; each other op is lowered by its entry in
``neutronq.lowering.ops.LOWERINGS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neutronq.fx import node_op, tensor_val
from neutronq.lowering.context import ConversionContext, LoweringError, TRef
from neutronq.lowering.edge import is_constant_placeholder, is_dq, is_q, is_weight_path
from neutronq.lowering.layout import canonical_perm
from neutronq.lowering.ops import LOWERINGS
from neutronq.lowering.tflite_builder import QParams, TFLiteBuilder, tfl

__all__ = ["ConvertedPartition", "partition_to_tflite"]


@dataclass(frozen=True)
class ConvertedPartition:
    tflite: bytes
    input_channels_last: list[bool]
    output_channels_last: list[bool]
    weight_bytes: int  # bytes of int8 weights + int32 biases in the model


def _input_qparams(p) -> QParams:
    dqs = [u for u in p.users if is_dq(u)]
    params = {(float(d.args[1]), int(d.args[2])) for d in dqs}
    if len(params) != 1:
        raise LoweringError(
            f"partition input {p.name} must be dequantized with exactly one set of int8 parameters; "
            f"found {sorted(params)}"
        )
    return QParams.per_tensor(*params.pop())


def _channels_last(t: TRef) -> bool:
    """Whether a partition input / output is stored channels last (else in PyTorch's order)."""
    return len(t.shape) >= 3 and t.perm == canonical_perm(len(t.shape))


# ops that read their input channels last (an image): a partition input they read is stored so
_IMAGE_OPS = {"aten.convolution.default", "aten.max_pool2d_with_indices.default", "aten.avg_pool2d.default",
              "aten._adaptive_avg_pool2d.default", "aten.max_pool2d.default"}


def _input_perm(p, rank: int) -> tuple[int, ...]:
    """The layout of a partition input: channels last when it has rank 4 or an image op reads
    it, else PyTorch's order (a [B, L, C] sequence needs no transpose before a linear)."""
    readers = [u for d in p.users if is_dq(d) for u in d.users]
    if rank >= 4 or any(node_op(u) in _IMAGE_OPS for u in readers):
        return canonical_perm(rank)
    return tuple(range(rank))


def partition_to_tflite(ep, description: str = "neutronq partition") -> ConvertedPartition:
    b = TFLiteBuilder(description)
    ctx = ConversionContext(ep, b)
    nodes = list(ep.graph.nodes)
    for p in nodes:
        if p.op == "placeholder" and not is_constant_placeholder(p, ep):
            shape = tuple(tensor_val(p).shape)
            t = ctx.new_tensor(shape, _input_qparams(p), p.name, perm=_input_perm(p, len(shape)))
            b.inputs.append(t.index)
            ctx.values[p] = t

    for node in nodes:
        if node.op != "call_function" or node in ctx.done:
            continue
        name = node_op(node)
        if is_weight_path(node, ep):
            continue  # constants are materialised by the op that uses them
        if is_dq(node):
            src = ctx.stored(node.args[0])
            qp = QParams.per_tensor(float(node.args[1]), int(node.args[2]))
            ctx.values[node] = src if src.qparams == qp else TRef(src.index, src.shape, src.perm, qp)
            if src.qparams != qp:
                raise LoweringError(f"{node.name} dequantizes {node.args[0].name} with other parameters")
            continue
        if is_q(node):
            qp = QParams.per_tensor(float(node.args[1]), int(node.args[2]))
            ctx.values[node] = ctx.requantize(ctx.stored(node.args[0]), qp, node.name)
            continue
        lower = LOWERINGS.get(name)
        if lower is None:
            raise LoweringError(f"no TFLite lowering for {name} (node {node.name})")
        lower(ctx, node)

    out_node = next(n for n in nodes if n.op == "output")
    outs = out_node.args[0] if isinstance(out_node.args[0], (list, tuple)) else [out_node.args[0]]
    out_flags = []
    for o in outs:
        t = ctx.stored(o)
        if t.perm not in (canonical_perm(len(t.shape)), tuple(range(len(t.shape)))):
            t = ctx.act(o)  # an output is stored channels last or in PyTorch's order
        if t.index in b.inputs or t.index in b.outputs:  # a graph output needs its own tensor
            copy = ctx.new_tensor(t.shape, t.qparams, f"{o.name}_out")
            opts = tfl.ReshapeOptionsT()
            opts.newShape = b.shape_of(copy.index)
            b.op("RESHAPE", [t.index, b.const_int32(b.shape_of(copy.index), f"{o.name}_outshape")],
                 [copy.index], opts)
            t = copy
        b.outputs.append(t.index)
        out_flags.append(_channels_last(t))
    in_flags = [_channels_last(ctx.values[p]) for p in nodes
                if p.op == "placeholder" and not is_constant_placeholder(p, ep)]
    weight_bytes = sum(
        int(np.prod(t.shape)) * (4 if t.type == tfl.TensorType.INT32 else 1)
        for t in b.tensors if t.buffer != 0 and t.quantization is not None
    )
    return ConvertedPartition(b.finish(), in_flags, out_flags, weight_bytes)
