"""Sphinx configuration: the API reference from the docstrings, the tutorials (MyST notebooks kept
as text, executed when the site is built), and the generated results page. Built offline by
``make docs`` into ``docs/_build/html`` with warnings treated as errors; external projects are
linked by plain URLs (no inventories are fetched)."""

import os
import shutil
import sys
from pathlib import Path

import jupyter_server_mathjax

import numpyro_reinmax
import pyro_reinmax

sys.path.insert(0, str(Path(__file__).parent))
import api_entries

project = "ReinMax for probabilistic programming"
author = "the reinmax-ppl authors"
copyright = "2026, the reinmax-ppl authors"
release = version = pyro_reinmax.__version__
assert numpyro_reinmax.__version__ == release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "results/*", "build.py", "conf.py", "api_entries.py"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# the tutorials run when they changed since the last build (jupyter-cache, in docs/_build);
# `REINMAX_DOCS_EXECUTE=off` builds without running them (the test suite runs them at smoke size)
nb_execution_mode = os.environ.get("REINMAX_DOCS_EXECUTE", "cache")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_merge_streams = False  # stderr apart, and removed below

# MathJax 2 from the jupyter-server-mathjax package, copied into the site: math renders offline
MATHJAX = Path(jupyter_server_mathjax.__file__).parent / "static"
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": True,
        "processClass": "math",
        "ignoreClass": "document",
    }
}
nb_output_stderr = "remove"  # progress-bar notices; the test suite runs the tutorials and sees them

html_theme = "sphinx_rtd_theme"
html_title = project
html_show_sourcelink = False
suppress_warnings = ["myst.header"]


def _copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        shutil.copytree(MATHJAX, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def _expand_estimator_classes(app, docname, source) -> None:
    if docname.startswith("api/"):
        source[0] = api_entries.expand(source[0], docname.removeprefix("api/"))


def setup(app) -> None:
    app.connect("source-read", _expand_estimator_classes)
    app.connect("build-finished", _copy_mathjax)
