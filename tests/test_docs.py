"""The documentation site: every public name has an API entry and a docstring, the tutorials run
and what they state holds, and the site builds with warnings treated as errors (tutorials not
executed)."""

import doctest
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))
import api_entries  # noqa: E402  (docs/api_entries.py)

PACKAGES = ["pyro_reinmax", "pyro_reinmax.infer", "numpyro_reinmax", "numpyro_reinmax.infer"]
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
MODULES = [
    module.name
    for package in ("pyro_reinmax", "numpyro_reinmax")
    for module in pkgutil.walk_packages(
        importlib.import_module(package).__path__, prefix=f"{package}."
    )
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    """Every example in a docstring is a doctest (``>>>``), and it runs."""
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module, name)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        assert "Example::" not in (test.docstring or ""), f"{test.name}: not a doctest"
        runner.run(test)
    assert runner.failures == 0


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_an_api_entry_and_a_docstring(package):
    module = importlib.import_module(package)
    page = api_entries.expand((DOCS / "api" / f"{package}.rst").read_text(), package)
    documented = set(
        re.findall(rf"^\.\. auto(?:class|function|data):: {package}\.(\w+)$", page, re.M)
    )
    public = set(module.__all__) - {"__version__"}
    assert documented == public, (sorted(public - documented), sorted(documented - public))
    assert inspect.getdoc(module)
    undocumented = [name for name in public if not inspect.getdoc(getattr(module, name))]
    assert not undocumented


def test_every_api_page_and_tutorial_is_in_the_table_of_contents():
    index = (DOCS / "index.md").read_text()
    for package in PACKAGES:
        assert f"api/{package}\n" in index
    for tutorial in TUTORIALS:
        assert f"tutorials/{tutorial.stem}\n" in index


# The size each tutorial runs at here: its default (the published page), except where that takes
# minutes and its statements already hold at fewer steps (the page's check cell says so).
CHECKED_STEPS = {"categorical_vae": "1000", "topic_model": "150"}


@pytest.mark.slow
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda path: path.stem)
def test_each_tutorial_runs_and_its_statements_hold(tutorial, tmp_path):
    """Every tutorial has hidden cells that assert what its text states (the fitted quantities
    against enumeration, the recovered clusters, the results files' numbers). Each runs in a
    fresh process, as the site's build runs it in a fresh kernel: a test worker's settings (the
    NumPyro tests turn on float64) would change its draws."""
    import jupytext  # here: importing it takes a second of every test worker's start

    notebook = jupytext.read(tutorial)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    checks = [cell for cell in code if "remove-cell" in cell.metadata.get("tags", [])]
    assert checks and all("assert " in cell.source for cell in checks)
    script = tmp_path / f"{tutorial.stem}.py"
    script.write_text("\n\n".join(cell.source for cell in code))
    environment = {**os.environ, "MPLBACKEND": "Agg"}
    environment.pop("REINMAX_TUTORIAL_STEPS", None)
    if tutorial.stem in CHECKED_STEPS:
        environment["REINMAX_TUTORIAL_STEPS"] = CHECKED_STEPS[tutorial.stem]
    # the compilation cache that conftest.py gave this process, for the tutorial's too
    environment["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow
def test_the_site_builds_without_warnings(tmp_path):
    environment = {**os.environ, "REINMAX_DOCS_EXECUTE": "off"}
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    build = subprocess.run(
        [*command, str(DOCS), str(tmp_path / "html")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    for page in ["index", "results", "api/numpyro_reinmax.infer", "tutorials/pyro_mixture"]:
        assert (tmp_path / "html" / f"{page}.html").stat().st_size > 0
    assert (tmp_path / "html" / "_static" / "mathjax" / "MathJax.js").exists()
