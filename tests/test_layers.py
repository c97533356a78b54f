"""The package's imports go one way: each module imports only modules of its own layer or of the
layers below it, nothing forms a cycle, and a function-local import of a neutronq module is
there only to defer a heavy dependency (and says so).

The layers, bottom to top, read as the flow:
  foundation   targets and the int8 scheme (backend), FX helpers, devices, metrics, progress bars, data
  aten_passes  graph passes and their order
  quantizer    NeutronQuantizer: annotation only (specs, observers, rules, overrides, QAT units)
  ptq          the flow and the steps after calibration (AdaRound, bias correction, ...)
  lowering     partitioner, per-op lowering and limits, TFLite, payload, the backend
  runtime      host execution of lowered programs
  report       reports built from results they are given
  app          the command, its pipeline and its inputs
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "neutronq"

LAYERS = (
    ("foundation", ("neutronq._progress", "neutronq.metrics", "neutronq.fx", "neutronq.devices", "neutronq.backend",
                    "neutronq.data")),
    ("aten_passes", ("neutronq.aten_passes",)),
    ("quantizer", ("neutronq.quantizer",)),
    ("ptq", ("neutronq.ptq",)),
    ("lowering", ("neutronq.lowering", "neutronq.nxp_backend", "neutronq.neutron_partitioner")),
    ("runtime", ("neutronq.runtime",)),
    ("report", ("neutronq.report",)),
    ("app", ("neutronq.app", "neutronq.__main__")),
)
# Import paths kept for ported code (the seeds' neutronq.quantizer.utils): a re-export of a layer
# above, which no module of the package may import.
COMPATIBILITY_SHIMS = {"neutronq.quantizer.utils"}
DEFER_MARK = "# deferred"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _rank(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def _resolve(module: str, imported: str, level: int, names: list[str]) -> list[str]:
    """The neutronq modules an import statement in ``module`` loads."""
    if level:  # relative import
        base = module.split(".")
        if not MODULES[module].name == "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (level - 1)]
        imported = ".".join(base + ([imported] if imported else []))
    if not imported or not (imported == "neutronq" or imported.startswith("neutronq.")):
        return []
    found = []
    for name in names:
        sub = f"{imported}.{name}"
        found.append(sub if sub in MODULES else imported)
    return found or [imported]


def _imports(module: str):
    """(imported module, line, function-local, deferred) for each neutronq import of ``module``."""
    path = MODULES[module]
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    local_lines = {n.lineno for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [t for a in node.names for t in _resolve(module, a.name, 0, [])]
        elif isinstance(node, ast.ImportFrom):
            targets = _resolve(module, node.module or "", node.level, [a.name for a in node.names])
        else:
            continue
        # the mark on the import's own lines, or on the comment or import lines just above it
        start = node.lineno - 1
        while start > 0 and lines[start - 1].strip().startswith(("#", "from ", "import ")):
            start -= 1
        deferred = any(DEFER_MARK in line for line in lines[start : node.end_lineno])
        for target in targets:
            yield target, node.lineno, node.lineno in local_lines, deferred


IMPORTS = {m: list(_imports(m)) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        if module != "neutronq":
            _rank(module)


def test_the_root_package_imports_nothing_of_its_own():
    """``neutronq`` loads its public names on first use, so importing it loads no layer."""
    assert IMPORTS["neutronq"] == []


def test_imports_go_only_downward():
    upward = []
    for module, imports in IMPORTS.items():
        if module == "neutronq" or module in COMPATIBILITY_SHIMS:
            continue
        for target, line, _, _ in imports:
            if target == "neutronq":
                continue
            if target in COMPATIBILITY_SHIMS:
                upward.append(f"{module}:{line} imports the compatibility path {target}")
            elif _rank(target) > _rank(module):
                upward.append(f"{module}:{line} ({LAYERS[_rank(module)][0]}) imports {target} "
                              f"({LAYERS[_rank(target)][0]})")
    assert upward == []


def test_shims_only_reexport_from_above():
    for shim in COMPATIBILITY_SHIMS:
        assert IMPORTS[shim], f"{shim} re-exports nothing"
        assert all(_rank(t) >= _rank(shim) for t, *_ in IMPORTS[shim])


def test_no_import_cycle():
    graph = {m: {t for t, *_ in imports if t in MODULES and t != m} for m, imports in IMPORTS.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_function_local_imports_only_defer_heavy_dependencies():
    undeclared = [f"{module}:{line} imports {target} inside a function"
                  for module, imports in IMPORTS.items()
                  for target, line, local, deferred in imports if local and not deferred]
    assert undeclared == [], (f"import at module level, or say why it is deferred with a "
                              f"'{DEFER_MARK}: ...' comment at the line")
