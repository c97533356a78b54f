"""The op tables agree: the quantizer's rules (``quantizer/rules.py``), the lowering's
registrations (``lowering/ops``: TFLite lowering + NPU limits) and the per-op test cases
(``op_cases.py``). A forgotten piece fails here, not silently in a user's model."""

from __future__ import annotations

from pathlib import Path

from op_cases import CASES

from neutronq.lowering.op_table import op_table
from neutronq.lowering.ops import OPS, OP_BY_EDGE, LOWERINGS
from neutronq.lowering.ops.base import NoPublishedLimit
from neutronq.quantizer.rules import CPU_ONLY_RULES, RULES


def test_every_rule_has_a_lowering_or_a_cpu_only_reason():
    lowered = {rule for op in OPS for rule in op.rules}
    rules = {rule.name for rule in RULES}
    missing = sorted(rules - lowered - set(CPU_ONLY_RULES))
    assert missing == [], "rules with neither a lowering (an OpLowering naming them) nor a CPU_ONLY_RULES reason"
    for name, reason in CPU_ONLY_RULES.items():
        assert name in rules and name not in lowered and len(reason) > 20, name


def test_every_lowering_lowers_a_rule():
    rules = {rule.name for rule in RULES}
    assert [op.name for op in OPS if not op.rules or set(op.rules) - rules] == []


def test_every_lowering_has_limits():
    for op in OPS:
        assert callable(op.limits), op.name
        if isinstance(op.limits, NoPublishedLimit):
            assert len(op.limits.why) > 20, f"{op.name}: say which source has no limit"


def test_every_lowering_has_a_test_case():
    covered = {name for case in CASES.values() for name in case.ops}
    assert sorted({op.name for op in OPS} - covered) == []
    assert sorted(covered - {op.name for op in OPS}) == [], "a case names a registration that does not exist"


def test_edge_ops_are_registered_once():
    assert len(OP_BY_EDGE) == sum(len(op.edge_ops) for op in OPS)
    assert set(LOWERINGS) == set(OP_BY_EDGE)


# --- docs/ops.md: the table a reader looks an op up in, kept equal to the registrations ---------
DOCS = Path(__file__).resolve().parents[2] / "docs" / "ops.md"
_HEADER = """# Ops: quantization rule, NPU lowering, limits, test cases

Generated from the registrations by `python tests/lowering/test_op_table.py` (a test fails when it
is out of date); `neutronq ops NAME` prints one op. Rules: `src/neutronq/quantizer/rules.py`;
lowerings and limits: `src/neutronq/lowering/ops/`; test cases: `tests/op_cases.py`. An op with
no rule stays float and runs on the CPU (the quantizer names it in a warning).

| rule | ATen ops (torch.export) | on the NPU as | TFLite | limits (source) | test cases |
|---|---|---|---|---|---|
"""


def render_ops_md() -> str:
    rows = []
    for row in op_table():
        cases = sorted(name for name, case in CASES.items() if set(case.ops) & set(row.lowerings))
        cases = cases[:8] + ([f"+{len(cases) - 8} more"] if len(cases) > 8 else [])
        npu = ", ".join(f"`{e}`" for e in row.edge_ops) if row.lowerings else f"CPU only: {row.cpu_only}"
        limits = "<br>".join(limit.replace("|", "/") for limit in row.limits) or "-"
        rows.append(f"| {row.rule} | {', '.join(f'`{a}`' for a in row.aten_ops)} | {npu} | "
                    f"{', '.join(row.tflite) or '-'} | {limits} | {', '.join(cases) or '-'} |")
    return _HEADER + "\n".join(rows) + "\n"


def test_docs_ops_md_is_up_to_date():
    assert DOCS.read_text() == render_ops_md(), "regenerate docs/ops.md: python tests/lowering/test_op_table.py"


if __name__ == "__main__":
    DOCS.write_text(render_ops_md())
    print(f"wrote {DOCS}")
