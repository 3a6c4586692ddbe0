"""The shape of the code, checked: arrows that run one way, and each library behind one module.

These read the source (``ast``), including imports made inside functions: a
cycle hidden in a function body is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
FUNCTIONS = sorted((ROOT / "functions").glob("*/main.py"))

# The leaf modules the verified caller may lean on, and nothing else.
PRINCIPAL_DEPENDS_ON = {"errors", "records"}
# Which shared module alone may import each third-party library.
LIBRARY_OWNERS = {
    "nacl": {"crypto"},
    "jwt": {"crypto"},
    "flask": {"http"},
    "werkzeug": {"http"},
    "google.cloud.firestore": {"store"},
    "google.cloud.firestore_v1": {"store"},
    "google.cloud.secretmanager_v1": {"secret_manager"},
    "grpc": {"store"},
    "firebase_admin": {"firebase"},
}
# What a function file may import from shared/: the HTTP layer, credential resolution and domain modules.
FUNCTION_FORBIDDEN = {
    "store",
    "crypto",
    "tokens",
    "keys",
    "records",
    "change",
    "strictjson",
    "secret_manager",
    "config",
}


def _modules() -> dict[str, Path]:
    return {path.stem: path for path in SHARED.glob("*.py") if path.stem != "__init__"}


def _imports(path: Path) -> list[str]:
    """Every module name imported anywhere in the file (``shared.x`` for ``from shared import x``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "shared":
                names += [f"shared.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
    return names


def _shared_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = {imported.split(".")[1] for imported in _imports(path) if imported.startswith("shared.")}
        graph[name] = (targets & set(modules)) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, path)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_cycle_in_shared_not_even_inside_a_function() -> None:
    assert _cycles(_shared_graph()) == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert _cycles(graph) == []
    graph["c"] = {"a"}  # as an import inside a function of c would add
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    hidden = tmp_path / "c.py"
    hidden.write_text("def f() -> None:\n    from shared import audit\n")
    assert _imports(hidden) == ["shared.audit"]


def test_the_verified_caller_depends_on_almost_nothing() -> None:
    assert _shared_graph()["principal"] <= PRINCIPAL_DEPENDS_ON


@pytest.mark.parametrize("library", sorted(LIBRARY_OWNERS))
def test_each_library_is_imported_by_its_one_module(library: str) -> None:
    importers = {
        name
        for name, path in _modules().items()
        if any(imported == library or imported.startswith(library + ".") for imported in _imports(path))
    }
    assert importers <= LIBRARY_OWNERS[library], f"{library} imported by {sorted(importers - LIBRARY_OWNERS[library])}"


def test_every_error_class_lives_in_the_errors_module() -> None:
    for name, path in _modules().items():
        if name == "errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(base) for base in node.bases}
                assert not any(
                    "Error" in base or "Exception" in base or base.startswith("errors.") for base in bases
                ), f"{name}.{node.name} is an error class outside errors.py"


def test_only_the_change_unit_opens_a_transaction() -> None:
    for name, path in _modules().items():
        if name in ("change", "store"):
            continue
        assert "transact(" not in path.read_text(), f"{name} writes outside change.apply"


@pytest.mark.parametrize("source", FUNCTIONS, ids=lambda p: p.parent.name)
def test_a_function_file_is_its_pipeline_and_nothing_more(source: Path) -> None:
    tree = ast.parse(source.read_text())
    imported = {name.split(".")[1] for name in _imports(source) if name.startswith("shared.")}
    assert not imported & FUNCTION_FORBIDDEN, f"{source.parent.name} imports {sorted(imported & FUNCTION_FORBIDDEN)}"
    assert all(name.startswith("shared.") for name in _imports(source)), "only shared modules are imported"
    assert not any(isinstance(node, ast.Try) for node in ast.walk(tree)), "no try/except in a function file"
    # At import time a function file only imports and defines its decorated entry point: no I/O.
    for node in tree.body:
        is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        assert is_docstring or isinstance(node, ast.ImportFrom | ast.FunctionDef), ast.unparse(node)[:80]


def test_the_store_channel_seam_is_set_only_by_tests() -> None:
    """``store.wrap_channel`` (fault injection, call counting) is inert in production: nothing served calls it."""
    served = [*_modules().values(), *FUNCTIONS]
    assert [path.name for path in served if "wrap_channel(" in path.read_text() and path.stem != "store"] == []
    from shared import store

    assert store._channel_wrapper is None
