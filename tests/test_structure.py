"""The code's shape, as the design asks for it (issue 23): no import cycle anywhere in the package
(package __init__ files included), a thin cli.py, short functions, and a backend or export format
that is one row in one table."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgeseg"
DRAWING = {"tasks/plots.py", "data/synthetic.py"}  # drawing code (figures, the synthetic scenes): long by nature
MAX_FUNCTION_LINES = 80
MAX_CLI_LINES = 400


def import_cycles() -> list[list[str]]:
    """Strongly connected groups of modules in edgeseg's import graph (grimp's, function-level imports included)."""
    import sys

    import grimp

    graph = grimp.build_graph("edgeseg")
    adjacency = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adjacency[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for m in sorted(adjacency):
        if m not in index:
            visit(m)
    return found


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in DRAWING:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_import_cycle_in_the_package():
    pytest.importorskip("grimp")
    assert import_cycles() == []


def test_cli_is_thin_and_functions_are_short():
    assert len((PACKAGE / "cli.py").read_text().splitlines()) <= MAX_CLI_LINES
    assert long_functions() == []


def test_a_backend_and_an_export_format_are_one_row_each():
    from edgeseg.export.formats import FORMATS
    from edgeseg.runtime.registry import BACKENDS, EXPORTED_SUFFIXES, MODEL_SUFFIXES

    assert set(BACKENDS) == {"torch", "onnxruntime", "openvino", "tensorrt"}
    assert set(MODEL_SUFFIXES) == {s for b in BACKENDS.values() for s in b.suffixes}
    assert set(EXPORTED_SUFFIXES) == set(MODEL_SUFFIXES) - set(BACKENDS["torch"].suffixes)
    for fmt in FORMATS.values():  # every format's model file runs on a registered backend
        assert any(fmt.model_file.endswith(s) for s in MODEL_SUFFIXES), fmt.name
