"""No import cycles inside the packages: each module's imports of its own package (at module
level or inside functions; ``if TYPE_CHECKING:`` blocks excluded) form a graph without cycles, so
a module can be read, imported and tested after the modules it uses."""

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["reinmax_core", "reinmax_kernels", "pyro_reinmax", "numpyro_reinmax"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports, submodules resolved where named."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known and name != module}


def import_graph(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` and the modules of the package it imports."""
    paths = sorted((ROOT / package).rglob("*.py"))
    modules = {_module_name(path): path for path in paths}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        targets = _imports(tree, name, path.name == "__init__.py", set(modules))
        # a package's own __init__ runs before its modules: not an edge back to it
        graph[name] = {
            t
            for t in targets
            if not (modules[t].name == "__init__.py" and name.startswith(t + "."))
        }
    return graph


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package):
    graph = import_graph(package)
    assert any(graph.values()) or package == "reinmax_kernels"
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        cycle = error.args[1]
        pytest.fail(f"{package} imports itself in a circle: {' -> '.join(reversed(cycle))}")


def test_the_graph_sees_function_level_imports():
    source = "def f():\n    from .b import g\n"
    tree = ast.parse(source)
    assert _imports(tree, "p.a", False, {"p.a", "p.b"}) == {"p.b"}
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import g\n"
    assert _imports(ast.parse(guarded), "p.a", False, {"p.a", "p.b"}) == set()
