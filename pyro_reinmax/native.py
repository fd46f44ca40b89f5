"""Optional CPU kernels: the categorical draw and the estimators' backward in one C pass each.

An eager PyTorch estimator makes a dozen passes over its tensors and, on small ones, spends most of
its time dispatching them; ``native.c`` does the draw in one pass and the backward in one more. It
is compiled on first use with the system C compiler (``$CC``, else ``cc``; about a second) for this
processor, with OpenMP where the compiler has it (then large calls use PyTorch's own OpenMP
threads), into a cache folder (``$REINMAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/reinmax``, else
``~/.cache/reinmax``) under a hash of the source, the compiler, the flags and the processor, and
loaded with :mod:`ctypes`. The kernels give the same draws as the PyTorch path (the same uniforms,
the same float64 prefix sums) and the same gradients up to rounding. They run on contiguous float32
and float64 CPU tensors; everything else (CUDA, other dtypes, ``create_graph=True``) takes the
PyTorch path.

``REINMAX_NATIVE=0`` turns them off, ``REINMAX_NATIVE=1`` makes a failed build an error; by
default a failed build warns once and the PyTorch path is used. :func:`set_native_kernels` does
the same from Python, and :func:`native_kernels_status` says which path is in use and why.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["native_kernels_status", "set_native_kernels"]

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ("-O3", "-march=native", "-std=c11", "-fPIC", "-shared", "-fopenmp-simd")
OPENMP = ("-fopenmp",)
SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}

_state: dict = {"decided": False, "library": None, "active": False, "reason": "", "enabled": None}


def _mode() -> str:
    """``"off"``, ``"required"`` or ``"auto"``, from :func:`set_native_kernels` or
    ``REINMAX_NATIVE``."""
    if _state["enabled"] is not None:
        return "required" if _state["enabled"] else "off"
    value = os.environ.get("REINMAX_NATIVE", "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    if value in ("1", "true", "yes", "on"):
        return "required"
    if value not in ("", "auto"):
        raise ValueError(f"REINMAX_NATIVE must be 0, 1 or auto, got {value!r}.")
    return "auto"


def cache_folder() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("REINMAX_CACHE_DIR"):
        return Path(os.environ["REINMAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reinmax"


def _build(flags: tuple[str, ...] = FLAGS + OPENMP) -> Path:
    """Compile ``native.c`` with ``flags`` unless a build of the same source, compiler and flags
    for this processor is cached; returns the shared library's path. The library is written under
    a temporary name and renamed, so processes building at once never load a half-written file."""
    compiler = shlex.split(os.environ.get("CC") or "cc")
    source = SOURCE.read_bytes()
    identity = [source, shlex.join(compiler + list(flags)).encode(), _processor().encode()]
    key = hashlib.sha256(b"\0".join(identity)).hexdigest()[:16]
    folder = cache_folder()
    library = folder / f"reinmax_native_{key}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        partial = Path(scratch) / library.name
        command = [*compiler, *flags, str(SOURCE), "-o", str(partial), "-lm"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as error:
            raise RuntimeError(f"{shlex.join(command)} could not run: {error}") from error
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr.strip()}")
        os.replace(partial, library)
    return library


def _processor() -> str:
    """What ``-march=native`` compiles for: the CPU's model and instruction sets where Linux
    lists them, so that a cache folder shared between machines never serves one machine's build to
    another."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.startswith(wanted)}))


def _declare(library: ctypes.CDLL) -> None:
    pointer, integer, real = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    for suffix in SUFFIXES.values():
        draw = getattr(library, f"reinmax_draw_{suffix}")
        draw.argtypes = [pointer, pointer, integer, integer, pointer, ctypes.c_int]
        draw.restype = integer
        combine = getattr(library, f"reinmax_combine_{suffix}")
        combine.argtypes = [pointer, pointer, integer] + [pointer] * 4 + [real, integer, integer]
        combine.argtypes += [pointer, ctypes.c_int]
        combine.restype = ctypes.c_int


def _decide() -> None:
    """Build and load the kernels where the mode asks for them; record whether they are used
    and why."""
    _state["decided"] = True
    mode = _mode()
    if mode == "off":
        _state["active"] = False
        _state["reason"] = "off: the PyTorch path (REINMAX_NATIVE=0 or set_native_kernels(False))"
        return
    if _state["library"] is None:
        try:
            loaded = _load()
        except (OSError, RuntimeError, AttributeError) as error:
            _state["active"] = False
            _state["reason"] = f"off: the build failed, the PyTorch path is used ({error})"
            if mode == "required":
                raise RuntimeError(
                    f"pyro_reinmax could not build its CPU kernels ({error}). Install a C "
                    "compiler (or set CC), or set REINMAX_NATIVE=0 to use the PyTorch path."
                ) from error
            warnings.warn(
                f"pyro_reinmax could not build its CPU kernels, so it uses the slower PyTorch "
                f"path ({error}). Set REINMAX_NATIVE=0 to use that path without this warning.",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        _state["library"] = loaded
    _state["active"] = True
    _state["reason"] = f"on: {_state['library']._name}"


def _load() -> ctypes.CDLL:
    """Build (with OpenMP, else without) and load the kernels."""
    try:
        path = _build(FLAGS + OPENMP)
    except RuntimeError:
        path = _build(FLAGS)
    loaded = ctypes.CDLL(str(path))
    _declare(loaded)
    return loaded


def set_native_kernels(enabled: bool | None) -> None:
    """Use the CPU kernels (True: build them now, raising if that fails), never (False), or as
    ``REINMAX_NATIVE`` says (None: build on first use, warn once if that fails). Also makes a
    changed ``REINMAX_NATIVE`` or ``CC`` take effect."""
    _state["enabled"] = enabled
    _state["decided"] = False
    if enabled:
        _decide()


def native_kernels_status() -> str:
    """Which path the CPU estimators take, and why (deciding it now if no estimator has run)."""
    if not _state["decided"]:
        _decide()
    return _state["reason"]


def usable(tensor: Tensor) -> bool:
    """Whether the kernels take this tensor: a contiguous float32 or float64 CPU tensor outside
    ``torch.compile`` tracing, with the kernels on and built (built on the first call)."""
    if not _state["decided"]:
        _decide()
    return (
        _state["active"]
        and tensor.device.type == "cpu"
        and tensor.dtype in SUFFIXES
        and type(tensor) is torch.Tensor
        and tensor.is_contiguous()
        and not torch.compiler.is_compiling()
    )


def draw_index(probs: Tensor, uniforms: Tensor) -> tuple[Tensor, int]:
    """Indices ``(..., 1)`` of the first prefix sum of each row above ``uniforms * total`` (as
    :func:`pyro_reinmax.sampling.draw_index`), and the number of rows whose total is NaN.
    ``probs`` must be :func:`usable`; ``uniforms`` contiguous float64 of shape ``(..., 1)``."""
    index = torch.empty(probs.shape[:-1] + (1,), dtype=torch.int64)
    nan_rows = getattr(_state["library"], f"reinmax_draw_{SUFFIXES[probs.dtype]}")(
        probs.data_ptr(),
        uniforms.data_ptr(),
        index.numel(),
        probs.shape[-1],
        index.data_ptr(),
        torch.get_num_threads(),
    )
    if nan_rows < 0:
        raise MemoryError("pyro_reinmax's draw kernel could not allocate its scratch memory.")
    return index, nan_rows


def combine(
    terms: list[tuple[Tensor, float, float, float, float | None]],
    probs: Tensor,
    index: Tensor,
    g: Tensor,
    h: Tensor | None,
    probs_scale: float,
) -> Tensor:
    r""":math:`\sum_i c_i \sum_s J(w_{y,i}\, y_{i,s} + w_{D,i} D)\, g + J(\pi_0)(h + b g)` over
    anchor terms ``(values, w_y, w_D, c, temperature)``
    (:class:`~pyro_reinmax.estimators.AnchorTerm`), each ``values`` of shape ``(S, ..., K)``:
    the anchors :math:`y_s` themselves where ``temperature`` is None, else logits :math:`x_s`
    with :math:`y_s = \operatorname{softmax}(x_s / \tau)`, computed in the kernel. :math:`b` is
    ``probs_scale``, ``h`` None for zero. ``probs`` must be :func:`usable` and ``index``
    contiguous; ``g``, ``h`` and the values are made contiguous of its dtype."""
    dtype = probs.dtype
    kept = []  # the contiguous values, alive until the call returns
    pointers: list[int] = []
    weights: list[float] = []
    row_bytes = probs.numel() * probs.element_size()
    for values, tempered_weight, sample_weight, scale, temperature in terms:
        values = _contiguous(values, dtype)
        kept.append(values)
        sets = values.numel() // probs.numel()
        pointers.extend(values.data_ptr() + s * row_bytes for s in range(sets))
        inverse = -1.0 if temperature is None else min(1.0 / temperature, torch.finfo(dtype).max)
        weights.extend((tempered_weight, sample_weight, scale, inverse) * sets)
    g = _contiguous(g, dtype)
    h = None if h is None else _contiguous(h, dtype)
    out = torch.empty_like(probs)
    count = len(pointers)
    status = getattr(_state["library"], f"reinmax_combine_{SUFFIXES[dtype]}")(
        (ctypes.c_void_p * count)(*pointers),
        (ctypes.c_double * (4 * count))(*weights),
        count,
        probs.data_ptr(),
        index.data_ptr(),
        g.data_ptr(),
        None if h is None else h.data_ptr(),
        probs_scale,
        index.numel(),
        probs.shape[-1],
        out.data_ptr(),
        torch.get_num_threads(),
    )
    if status:
        raise MemoryError("pyro_reinmax's backward kernel could not allocate its scratch memory.")
    return out


def _contiguous(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    if tensor.dtype is not dtype:
        tensor = tensor.to(dtype)
    return tensor if tensor.is_contiguous() else tensor.contiguous()


if __name__ == "__main__":  # python -m pyro_reinmax.native: build now and say so
    set_native_kernels(True)
    print(native_kernels_status())
