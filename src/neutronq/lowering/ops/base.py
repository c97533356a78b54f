"""What one op's registration holds in the lowering: the edge ops it covers, how it lowers to
TFLite, its NPU limits (or the explicit statement that none is published), and the quantizer
rules whose ops reach the edge dialect as these ops (the join with ``quantizer/rules.py``).

    OpLowering(
        name="hardswish",                        # how users and docs name it
        edge_ops=("aten.hardswish.default",),    # the edge-dialect ops it lowers
        lower=lower_hardswish,                   # lower(ctx, node): emit TFLite operators
        limits=NO_PUBLISHED_LIMIT,               # or limit(node, spec, ep, res) -> reason | None
        rules=("hardswish",),                    # quantizer rule names (RULES) it lowers
        tflite=("HARD_SWISH",),                  # the TFLite builtins it emits
        preserve=("aten.hardswish.default",),    # ATen ops kept from decomposition
    )

``preserve``: ops that ``to_edge`` would otherwise decompose into pieces the NPU runs less well
(hardswish -> add, clamp, mul, div); ``NeutronPartitioner.ops_to_not_decompose`` keeps exactly
those nodes it will delegate, the others decompose as usual.

``tests/lowering/test_op_table.py`` checks that the tables agree: every quantizer rule has a
lowering or an explicit CPU-only reason, every lowering has limits (or ``NoPublishedLimit``
with its reason) and a per-op test case that puts it on the NPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

__all__ = ["OpLowering", "NoPublishedLimit", "NO_PUBLISHED_LIMIT"]


@dataclass(frozen=True)
class NoPublishedLimit:
    """An op whose NPU limits nobody published beyond the int8 scheme itself: nothing to enforce,
    said explicitly (``why``: the source that was checked)."""

    why: str = ("no op-specific limit in NXP's published converter constraints; int8 in and out "
                "(the partitioner checks that) is the only requirement")

    def __call__(self, node, spec, ep, res):
        return None


NO_PUBLISHED_LIMIT = NoPublishedLimit()


@dataclass(frozen=True)
class OpLowering:
    name: str
    edge_ops: tuple[str, ...]
    lower: Callable
    limits: Union[Callable, NoPublishedLimit]
    rules: tuple[str, ...]
    tflite: tuple[str, ...] = ()
    preserve: tuple[str, ...] = ()
