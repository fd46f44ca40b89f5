"""Both ``infer`` packages annotate every parameter (``*args``/``**kwargs`` included; not
``self``/``cls``) and the return of every function, with the same names for the same things."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["pyro_reinmax/infer", "numpyro_reinmax/infer"]


def _unannotated(path: Path) -> list[str]:
    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        arguments = node.args
        parameters = [
            a
            for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
            if a.arg not in ("self", "cls")
        ]
        parameters += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        if node.returns is None or any(a.annotation is None for a in parameters):
            missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return missing


@pytest.mark.parametrize("package", PACKAGES)
def test_every_function_of_the_infer_package_is_fully_annotated(package):
    files = sorted((ROOT / package).glob("*.py"))
    assert files
    missing = [where for path in files for where in _unannotated(path)]
    assert not missing, missing
