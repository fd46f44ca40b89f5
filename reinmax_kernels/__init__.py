"""Build, cache and switch the optional C kernels shared by ``pyro_reinmax`` and
``numpyro_reinmax`` (``kernels.c``: the categorical draw and the estimators' backward; declared
for C++ in ``kernels.h``), with PyTorch's estimator operator (``torch_estimator.cc``) and JAX's
XLA FFI handlers (``xla_ffi.cc``).

The kernels are compiled on first use with the system compilers (``$CC``, else ``cc``; ``$CXX``,
else ``c++``, for the C++ sources) for this processor (``-march=native``), into a
cache folder (``$REINMAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/reinmax``, else ``~/.cache/reinmax``)
under a hash of the sources, the headers, the compilers, the flags and the processor. A library
is written under a temporary name and renamed, so no process loads a half-written file, and built
under a lock file, so processes that need it at once (test workers, data-parallel ranks) compile
it once.

The kernels are an opt-in: by default (``REINMAX_NATIVE`` unset or ``0``) each backend runs its
own operations and nothing is compiled. ``REINMAX_NATIVE=1`` (or a backend's
``set_native_kernels(True)``) builds them on first use and makes a failed build an error;
``REINMAX_NATIVE=auto`` builds them and, where that fails, warns once and runs the backend's own
operations. ``benchmarks/svi_kernels.py`` measures what they change in a whole SVI step of each
example model (often nothing, sometimes a loss: see the CPU kernels guide). Each backend has its
``set_native_kernels`` and ``native_kernels_status`` (:class:`NativeKernels`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

__all__ = [
    "KERNELS_SOURCE",
    "TORCH_ESTIMATOR_SOURCE",
    "XLA_HANDLERS_SOURCE",
    "NativeKernels",
    "build",
    "cache_folder",
]

KERNELS_SOURCE = Path(__file__).with_name("kernels.c")
XLA_HANDLERS_SOURCE = Path(__file__).with_name("xla_ffi.cc")
TORCH_ESTIMATOR_SOURCE = Path(__file__).with_name("torch_estimator.cc")
HEADERS = (Path(__file__).with_name("kernels.h"),)
OPTIMISE = ("-O3", "-march=native", "-fPIC", "-fopenmp-simd")
PORTABLE = ("-O3", "-fPIC")
"""Tried where a compiler refuses :data:`OPTIMISE` (``-march=native`` on some targets)."""
LANGUAGE_FLAGS = {".c": ("-std=c11",), ".cc": ("-std=c++20",)}


class CacheFolderError(OSError):
    """The cache folder is a file, or cannot be created: no compiler would help."""


def cache_folder() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("REINMAX_CACHE_DIR"):
        return Path(os.environ["REINMAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reinmax"


def processor() -> str:
    """What ``-march=native`` compiles for: the CPU's model and instruction sets where Linux
    lists them, so that a cache folder shared between machines never serves one machine's build to
    another."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.startswith(wanted)}))


def _compiler(suffix: str) -> list[str]:
    variable, default = ("CXX", "c++") if suffix == ".cc" else ("CC", "cc")
    return shlex.split(os.environ.get(variable) or default)


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"{shlex.join(command)} could not run: {error}") from error
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr.strip()}")


def build(
    name: str,
    sources: Sequence[Path],
    compile_flags: Sequence[str] = (),
    link_flags: Sequence[str] = (),
) -> Path:
    """The shared library ``name`` from C (``.c``) and C++ (``.cc``) ``sources``, compiled with
    :data:`OPTIMISE` (else :data:`PORTABLE`) and ``compile_flags`` and linked with
    ``link_flags``, from the cache when the same build exists; raises RuntimeError with the
    compiler's message when it fails."""
    try:
        return _build(name, sources, OPTIMISE, compile_flags, link_flags)
    except RuntimeError:
        return _build(name, sources, PORTABLE, compile_flags, link_flags)


def _build(
    name: str,
    sources: Sequence[Path],
    optimise: Sequence[str],
    compile_flags: Sequence[str],
    link_flags: Sequence[str],
) -> Path:
    """:func:`build` with the optimisation flags ``optimise``."""
    sources = [Path(source) for source in sources]
    steps = [
        _compiler(source.suffix) + [*optimise, *LANGUAGE_FLAGS[source.suffix], *compile_flags]
        for source in sources
    ]
    linker = _compiler(".cc" if any(s.suffix == ".cc" for s in sources) else ".c")
    identity = [source.read_bytes() for source in [*sources, *HEADERS]]
    identity += [shlex.join(step).encode() for step in steps]
    identity += [shlex.join(linker + list(link_flags)).encode(), processor().encode()]
    key = hashlib.sha256(b"\0".join(identity)).hexdigest()[:16]
    folder = cache_folder()
    library = folder / f"{name}_{key}.so"
    if library.exists():
        return library
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheFolderError(
            f"the kernel cache {folder} cannot be used as a folder ({error})"
        ) from error
    with _exclusive(folder / f"{library.name}.lock"):
        if library.exists():  # built by another process while this one waited
            return library
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            objects = []
            for index, (source, step) in enumerate(zip(sources, steps, strict=True)):
                objects.append(str(Path(scratch) / f"{index}.o"))
                _run([*step, "-c", str(source), "-o", objects[-1]])
            partial = Path(scratch) / library.name
            _run([*linker, "-shared", *objects, "-o", str(partial), "-lm", *link_flags])
            os.replace(partial, library)
    return library


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing): processes (or threads)
    that need the same build at once wait for the first instead of compiling it again. Where
    ``fcntl`` is missing, no lock: each builds, and the rename keeps that safe."""
    if fcntl is None:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mode(enabled: bool | None) -> str:
    """``"off"``, ``"required"`` or ``"auto"``: ``enabled`` if set, else ``REINMAX_NATIVE`` (off
    when unset)."""
    if enabled is not None:
        return "required" if enabled else "off"
    value = os.environ.get("REINMAX_NATIVE", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return "off"
    if value in ("1", "true", "yes", "on"):
        return "required"
    if value != "auto":
        raise ValueError(f"REINMAX_NATIVE must be 0, 1 or auto, got {value!r}.")
    return "auto"


class NativeKernels:
    """A backend's switch for the kernels: ``load()`` builds and loads them (once, on first use);
    :meth:`active` says whether to use them. ``package`` and ``fallback`` name the backend and its
    own path in messages."""

    def __init__(self, package: str, fallback: str, load: Callable[[], object]):
        self.package, self.fallback, self.load = package, fallback, load
        self.library = None
        self.enabled: bool | None = None
        self.decided = False
        self.on = False
        self.reason = ""

    def active(self) -> bool:
        """Whether the kernels are on and built (building them on the first call)."""
        if not self.decided:
            self._decide()
        return self.on

    def set(self, enabled: bool | None) -> None:
        """Use the kernels (True: build them now, raising if that fails), never (False), or as
        ``REINMAX_NATIVE`` says (None; off where it is unset). Also makes a changed
        ``REINMAX_NATIVE``, ``CC`` or ``CXX`` take effect."""
        if enabled is not None and not isinstance(enabled, bool):
            raise TypeError(
                f"set_native_kernels takes True, False or None, got {enabled!r} "
                "(the environment variable REINMAX_NATIVE takes the strings)"
            )
        self.enabled = enabled
        self.decided = False
        if enabled:
            self._decide()

    def status(self) -> str:
        """Which path the backend takes, and why (deciding it now if it has not)."""
        if not self.decided:
            self._decide()
        return self.reason

    def _decide(self) -> None:
        self.decided = True
        mode = _mode(self.enabled)
        self.on = False
        if mode == "off":
            self.reason = (
                f"off: the {self.fallback} path (the default; REINMAX_NATIVE=1 or "
                "set_native_kernels(True) turns the CPU kernels on)"
            )
            return
        if self.library is None:
            try:
                self.library = self.load()
            except (OSError, RuntimeError, AttributeError) as error:
                self.reason = f"off: the build failed, the {self.fallback} path is used ({error})"
                if mode == "required":
                    remedy = (
                        "Point REINMAX_CACHE_DIR at a writable folder"
                        if isinstance(error, CacheFolderError)
                        else "Install a C compiler (or set CC)"
                    )
                    raise RuntimeError(
                        f"{self.package} could not build its CPU kernels ({error}). {remedy}, "
                        f"or leave the kernels off (the default: REINMAX_NATIVE unset) to use the "
                        f"{self.fallback} path."
                    ) from error
                warnings.warn(
                    f"{self.package} could not build its CPU kernels, so it uses the "
                    f"{self.fallback} path ({error}). Unset REINMAX_NATIVE to use that path "
                    "without this warning.",
                    RuntimeWarning,
                    stacklevel=5,
                )
                return
        self.on = True
        self.reason = f"on: {getattr(self.library, '_name', self.library)}"
