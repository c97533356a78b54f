"""Per-module and per-op changes of the quantization scheme (``NeutronQuantizer(...,
overrides={...})``): which observer, and per-channel weights or not, for part of the graph.

A key is a module path (as in ``named_modules()``; it covers the module and everything inside
it) or an op name (``str(node.target)``, e.g. ``"aten.linear.default"``); the value is a dict
of ``QuantizationScheme`` fields. Op keys apply first, then module keys from outer to inner,
so the innermost wins. A key that matches no quantized op is an error naming the graph's paths.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from torch.fx import GraphModule, Node

from neutronq.quantizer.specs import QuantizationScheme

__all__ = ["SchemeOverrides", "module_path", "OVERRIDABLE"]

OVERRIDABLE = ("activation_observer", "weight_observer", "per_channel")


def module_path(node: Node) -> Optional[str]:
    """The path (as in ``named_modules()``) of the innermost module a node was traced in."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    return list(stack.values())[-1][0]


def _is_op_key(key: str) -> bool:
    return key.startswith("aten.") or key.startswith("quantized_decomposed.")


class SchemeOverrides:
    """Scheme fields changed per op name or per module path (see ``NeutronQuantizer``)."""

    def __init__(self, base: QuantizationScheme, overrides: Optional[dict]):
        self.base = base
        self.op_schemes: dict[str, QuantizationScheme] = {}
        self.module_overrides: list[tuple[str, dict]] = []
        self._matched: set[str] = set()
        for key, fields in (overrides or {}).items():
            if not isinstance(key, str) or not isinstance(fields, dict):
                raise TypeError(
                    "overrides maps a module path or op name (str) to a dict of scheme fields, e.g. "
                    "{'_blocks.3': {'activation_observer': 'mse'}}; got "
                    f"{key!r}: {fields!r}."
                )
            unknown = set(fields) - set(OVERRIDABLE)
            if unknown:
                raise ValueError(
                    f"overrides[{key!r}] sets {sorted(unknown)}; an override can set only "
                    f"{', '.join(OVERRIDABLE)}."
                )
            dataclasses.replace(base, **fields)  # validates the observer names now
            if _is_op_key(key):
                self.op_schemes[key] = dataclasses.replace(base, **fields)
            else:
                self.module_overrides.append((key, dict(fields)))
        # outer modules first, so that inner ones win
        self.module_overrides.sort(key=lambda kv: kv[0].count(".") + (kv[0] != ""))

    def uses_activation_observer(self, name: str) -> bool:
        """Whether the base scheme or any override asks for the activation observer ``name``."""
        schemes = [self.base, *self.op_schemes.values()]
        return any(s.activation_observer == name for s in schemes) or \
            any(fields.get("activation_observer") == name for _, fields in self.module_overrides)

    def scheme_for(self, node: Node) -> QuantizationScheme:
        if not self.op_schemes and not self.module_overrides:
            return self.base
        op = str(node.target)
        scheme = self.op_schemes.get(op, self.base)
        if op in self.op_schemes:
            self._matched.add(op)
        path = module_path(node)
        if path is not None:
            for key, fields in self.module_overrides:
                if key == "" or path == key or path.startswith(key + "."):
                    scheme = dataclasses.replace(scheme, **fields)
                    self._matched.add(key)
        return scheme

    def check_all_matched(self, model: GraphModule) -> None:
        keys = set(self.op_schemes) | {k for k, _ in self.module_overrides}
        missing = sorted(keys - self._matched)
        if missing:
            paths = sorted({p for n in model.graph.nodes if (p := module_path(n))})
            raise ValueError(
                f"NeutronQuantizer overrides matched no quantized op: {missing}. Keys are module "
                f"paths (this graph has e.g. {paths[:5]}) or op names such as 'aten.conv2d.default'."
            )
