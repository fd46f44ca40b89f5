"""Shared by every test module: memory is given back between modules.

A test worker runs hundreds of tests in one process; JAX keeps every compiled executable (jit and
each eagerly run operation) for the life of the process. Clearing them after each module keeps a
worker's memory at what one module needs instead of what all of them needed.
"""

import gc
import sys

import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_the_module():
    yield
    jax = sys.modules.get("jax")
    if jax is not None:
        jax.clear_caches()
    gc.collect()
