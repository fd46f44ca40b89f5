"""The README's code runs and does what it says."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


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
