"""Shared by every test module: memory is given back between modules, and XLA's compilations are
kept on disk.

A test worker runs hundreds of tests in one process; JAX keeps every compiled executable (jit and
each eagerly run operation) for the life of the process. Clearing them after each module keeps a
worker's memory at what one module needs instead of what all of them needed, once glibc hands the
freed heap back (``malloc_trim``). JAX's persistent
compilation cache (``.cache/jax-tests`` in the repository, or ``$JAX_COMPILATION_CACHE_DIR``)
gives a module the compilations that an earlier module or the other worker made, and a later run
all of them: compiling small eager operations is most of the NumPyro tests' time.
"""

import contextlib
import ctypes
import gc
import os
from pathlib import Path

import jax
import pytest

jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("JAX_COMPILATION_CACHE_DIR")
    or str(Path(__file__).resolve().parent.parent / ".cache" / "jax-tests"),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _return_freed_heap_to_the_system() -> None:
    """glibc keeps freed heap pages for reuse: hand them back, so that a worker's resident memory
    is what it holds, not the most it ever held (a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_the_module():
    yield
    jax.clear_caches()
    gc.collect()
    _return_freed_heap_to_the_system()
