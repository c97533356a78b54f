"""Per-op converters from edge-dialect nodes to TFLite operators, one module per op family.

``CONVERTERS`` maps an edge op name (``"aten.convolution.default"``) to ``convert(ctx, node)``.
An op's NPU limits live in ``neutronq.lowering.op_limits`` under the same name.
"""

from neutronq.lowering.ops import activation, conv, data_movement, elementwise, fully_connected, pool

CONVERTERS: dict = {}
for _module in (conv, fully_connected, elementwise, activation, pool, data_movement):
    CONVERTERS.update(_module.CONVERTERS)

__all__ = ["CONVERTERS"]
