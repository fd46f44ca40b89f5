"""The README's code, and the runnable code of the guides, runs and does what it says (the
guide on several processes holds fragments for a cluster, run by ``test_parallel.py``'s
commands instead)."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    *(ROOT / "docs" / "guides" / f for f in ("estimators.md", "kernels.md")),
]


def _python_blocks() -> list[str]:
    return [
        block
        for document in DOCUMENTS
        for block in re.findall(r"```python\n(.*?)```", document.read_text(), flags=re.S)
    ]


def test_readme_has_python_examples():
    assert _python_blocks()


def _stated_prints(block: str) -> list[str]:
    """What each ``print(...)  # TEXT`` line of a block says it prints: TEXT up to a ``...``."""
    return [
        match.split("...")[0].strip()
        for match in re.findall(r"^\s*print\(.*\)\s+# (.*)$", block, flags=re.M)
    ]


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_example_does_what_it_says(index):
    """Each example runs and shows what its comments state: an example that fits the
    two-component mixture (``locs  # close to (-3, 3)``) finds the two clusters, and each
    ``print(...)  # TEXT`` prints TEXT (up to an ellipsis). Every block states something."""
    import pyro

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    block = _python_blocks()[index]
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, f"README block {index}", "exec"), namespace)
    stated = _stated_prints(block)
    fits = "# close to (-3, 3)" in block
    assert fits or stated, "a block with no stated result checks nothing"
    if fits:
        locs = sorted(np.asarray(namespace["locs"].tolist(), dtype=float))
        assert locs == pytest.approx([-3.0, 3.0], abs=0.5)
    lines = printed.getvalue().splitlines()
    assert len(lines) == len(stated)
    for line, expected in zip(lines, stated, strict=True):
        assert line.startswith(expected), (line, expected)
