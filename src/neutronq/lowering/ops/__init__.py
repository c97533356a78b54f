"""One module per op family; each registers its ops in ``OPS`` (``base.OpLowering``: the edge
ops it covers, the TFLite lowering, the NPU limits with their sources, the quantizer rules it
lowers). Here they are joined into the tables the partitioner and the TFLite lowering read:

  * ``OPS``: every registration; ``OP_BY_EDGE``: edge op name -> its registration;
  * ``LOWERINGS``: edge op name -> ``lower(ctx, node)``;
  * ``check_limits(node, spec, ep)``: an op's limits (and the rank limit every op shares).
"""

from __future__ import annotations

import torch

from neutronq.fx import node_op
from neutronq.lowering.limits import MAX_RANK, LimitCheck, shape
from neutronq.lowering.ops import (activation, conv, data_movement, elementwise, fully_connected, matmul, pool, reduce,
                                  resize)
from neutronq.lowering.ops.base import OpLowering

__all__ = ["OPS", "OP_BY_EDGE", "LOWERINGS", "PRESERVED", "check_limits"]

OPS: tuple[OpLowering, ...] = tuple(
    op for family in (conv, fully_connected, elementwise, activation, pool, reduce, data_movement, resize, matmul)
    for op in family.OPS
)


def _by_edge(ops) -> dict[str, OpLowering]:
    table: dict[str, OpLowering] = {}
    for op in ops:
        for edge in op.edge_ops:
            if edge in table:
                raise RuntimeError(f"{edge} is registered twice: by {table[edge].name} and by {op.name}")
            table[edge] = op
    return table


OP_BY_EDGE: dict[str, OpLowering] = _by_edge(OPS)
LOWERINGS: dict = {edge: op.lower for edge, op in OP_BY_EDGE.items()}
# ATen op name -> its registration, for the ops kept from decomposition when delegated
PRESERVED: dict[str, OpLowering] = {name: op for op in OPS for name in op.preserve}


def check_limits(node, spec, ep) -> LimitCheck:
    """Whether ``node`` fits the NPU's limits on ``spec``'s target (``LimitCheck.reason`` None)."""
    res = LimitCheck()
    for arg in [node, *[a for a in node.args if isinstance(a, torch.fx.Node)]]:
        if len(shape(arg)) > MAX_RANK:
            res.reason = f"tensor {arg.name} has rank {len(shape(arg))} > {MAX_RANK}"
            return res
    op = OP_BY_EDGE.get(node_op(node))
    if op is not None:
        res.reason = op.limits(node, spec, ep, res)
    return res
