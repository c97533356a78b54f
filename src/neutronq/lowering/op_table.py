"""Everything neutronq knows about one op, found by its name: the quantization rule
(``quantizer/rules.py``), the edge ops and TFLite operators it lowers to with its NPU limits and
their source (``lowering/ops/``), or the reason it stays on the CPU. ``neutronq ops [NAME]``
prints it; ``docs/ops.md`` is this table with the per-op test cases (``tests/op_cases.py``),
checked to be up to date by ``tests/lowering/test_op_table.py``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from neutronq.fx import op_name
from neutronq.lowering.ops import OPS
from neutronq.lowering.ops.base import NoPublishedLimit
from neutronq.quantizer.rules import CPU_ONLY_RULES, RULES

__all__ = ["OpRow", "op_table", "describe_op"]


@dataclass(frozen=True)
class OpRow:
    """One quantization rule and what lowers the ops it covers."""

    rule: str
    family: str  # the rule's family (Weighted, Elementwise, SharedIO, ...)
    aten_ops: tuple[str, ...]  # the ATen ops of torch.export it annotates
    lowerings: tuple[str, ...]  # OpLowering names
    edge_ops: tuple[str, ...]
    tflite: tuple[str, ...]
    limits: tuple[str, ...]  # per lowering: the limit's first doc line, or why none is published
    cpu_only: str = ""  # the reason, for a rule the NPU never runs


def _limit_text(limit) -> str:
    if isinstance(limit, NoPublishedLimit):
        return f"no published limit: {limit.why}"
    doc = inspect.getdoc(limit) or ""
    first = doc.split("\n\n")[0].replace("\n", " ").strip()
    return first or f"{limit.__module__}.{getattr(limit, '__name__', type(limit).__name__)}"


def op_table() -> list[OpRow]:
    """One row per quantization rule, in the rules' order."""
    rows = []
    for rule in RULES:
        lowerings = [op for op in OPS if rule.name in op.rules]
        rows.append(OpRow(
            rule=rule.name,
            family=type(rule).__name__,
            aten_ops=tuple(op_name(t) for t in rule.targets),
            lowerings=tuple(op.name for op in lowerings),
            edge_ops=tuple(e for op in lowerings for e in op.edge_ops),
            tflite=tuple(dict.fromkeys(t for op in lowerings for t in op.tflite)),
            limits=tuple(f"{op.name}: {_limit_text(op.limits)}" for op in lowerings),
            cpu_only=CPU_ONLY_RULES.get(rule.name, ""),
        ))
    return rows


def describe_op(name: str) -> str:
    """What neutronq does with the op ``name`` (a rule name such as ``hardswish``, or an ATen or
    edge op name such as ``aten.hardswish.default``), as text; the known names when unknown."""
    wanted = name.strip().lower()
    matches = [row for row in op_table()
               if wanted in (row.rule.lower(), *map(str.lower, row.aten_ops), *map(str.lower, row.edge_ops))
               or any(wanted == a.split(".")[1].lower() for a in row.aten_ops)]
    if not matches:
        known = ", ".join(row.rule for row in op_table())
        return (f"neutronq has no quantization rule for {name!r}: it stays float and runs on the CPU. "
                f"Ops with a rule: {known}.")
    out = []
    for row in matches:
        out.append(f"{row.rule} ({row.family} rule): {', '.join(row.aten_ops)}")
        if row.cpu_only:
            out.append(f"  on the CPU: {row.cpu_only}")
        for lowering, limit in zip(row.lowerings, row.limits):
            op = next(op for op in OPS if op.name == lowering)
            out.append(f"  NPU: {', '.join(op.edge_ops)} -> {', '.join(op.tflite) or 'no operator (identity)'}"
                       + (f"; kept whole: {', '.join(op.preserve)}" if op.preserve else ""))
            out.append(f"    limits: {limit.split(': ', 1)[1]}")
    return "\n".join(out)
