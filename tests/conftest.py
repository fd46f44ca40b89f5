"""Shared by every test module: memory is given back between modules (and after each slow test),
XLA's compilations are kept on disk, and slow tests run first.

A test worker runs hundreds of tests in one process; JAX keeps every compiled executable (jit and
each eagerly run operation) for the life of the process. Clearing them after each module keeps a
worker's memory at what one module needs instead of what all of them needed, once glibc hands the
freed heap back (``malloc_trim``). JAX's persistent
compilation cache (``.cache/jax-tests`` in the repository, or ``$JAX_COMPILATION_CACHE_DIR``)
gives a module the compilations that an earlier module or the other worker made, and a later run
all of them: compiling small eager operations is most of the NumPyro tests' time.

Compilation and threads, set before JAX or torch start (and inherited by the processes that tests
start):

* XLA compiles with LLVM's optimisation level 0 (``--xla_backend_optimization_level=0``) and
  its CPU fusions with the older elemental emitters (``--xla_cpu_use_fusion_emitters=false``):
  the tests run small programs a few times, so code generation costs more than the code saves.
  Level 0 took a quarter off the NumPyro tests' time on a cold cache; the older emitters then
  halved what compilation was left (a NumPyro GMM comparison of five methods: 25.6 s -> 17.7 s,
  the same metrics to the last digit). The HLO-level passes, which decide what is computed,
  still run, and every tolerance of the suite holds as with the defaults. (Both flags exist in
  the pinned jaxlib, constraints.txt; an XLA that does not know a flag aborts at start, so
  check them when upgrading.)
* Under pytest-xdist, each worker's torch and OpenMP take their share of the cores
  (``cores // workers``, at least 1): two workers each spinning two OpenMP threads on two cores
  made the Pyro tests 1.6 times slower.
"""

import contextlib
import ctypes
import gc
import os
from pathlib import Path


def _threads_per_worker() -> int | None:
    """``cores // workers`` under pytest-xdist (at least 1); None in a single process."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    return max(1, (os.cpu_count() or 1) // workers) if workers else None


_XLA_FAST_COMPILATION = [
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
]
for _flag in _XLA_FAST_COMPILATION:  # a value the user set wins
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()
if (_THREADS := _threads_per_worker()) is not None:
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)

import jax  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if _THREADS is not None:
    torch.set_num_threads(_THREADS)

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


def _release_memory() -> None:
    jax.clear_caches()
    gc.collect()
    _return_freed_heap_to_the_system()


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_the_module():
    yield
    _release_memory()


@pytest.fixture(autouse=True)
def _release_memory_after_a_slow_test(request):
    """A slow test trains whole models (``reinmax-compare``, the tutorials): what it compiled is
    given back at once, not with the rest of its module."""
    yield
    if request.node.get_closest_marker("slow"):
        _release_memory()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (in their collected order): under pytest-xdist the long runs start while
    the other worker takes the short tests, and the run ends on short tests instead of one
    worker finishing a long run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
