# Two commands do all the set-up on a fresh machine:
#   make demo   -- install into .venv, then run the main job on its embedded default
#   make test   -- install into .venv, then run the test suite
PYTHON ?= python3
# A CPU build of torch; on a CUDA machine use e.g. `make TORCH_SPEC="torch" test`.
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Test workers (pytest-xdist): one per core, idle workers steal queued tests (the slow ones
# come last); `make test PYTEST_ARGS="-n 0 -k elbo"`
# runs in one process, selected tests only.
PYTEST_ARGS ?= -n auto --dist worksteal

.PHONY: install demo test lint format bench docs wheel-check

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reinmax-compare gmm

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The documentation site (API reference, executed tutorials, results) into docs/_build/html;
# warnings are errors. `make docs REINMAX_DOCS_EXECUTE=off` skips running the tutorials.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# `pip wheel .`, installed in a fresh environment, runs the README's examples with no compiler
wheel-check:
	PYTHON=$(PYTHON) TORCH_SPEC="$(TORCH_SPEC)" .ci/wheel-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
