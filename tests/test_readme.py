"""The README's code, and the runnable code of the guides, runs and does what it says (the
guide on several processes holds fragments for a cluster, run by ``test_parallel.py``'s
commands instead)."""

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


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_example_fits_the_two_clusters(index):
    """Each example runs; each that fits the two-component mixture (it leaves its estimate in
    ``locs``) finds the two clusters."""
    import pyro

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    namespace: dict = {}
    exec(compile(_python_blocks()[index], f"README block {index}", "exec"), namespace)
    if "locs" not in namespace:
        assert "fit" not in _python_blocks()[index].lower()
        return
    locs = sorted(np.asarray(namespace["locs"].tolist(), dtype=float))
    assert locs == pytest.approx([-3.0, 3.0], abs=0.5)
