"""Opt-in CPU kernels for PyTorch: the categorical draw and the estimators' backward in one C pass
each (:mod:`reinmax_kernels`), and the estimator operator ``torch.ops.reinmax.estimate``: a
single-anchor rule's forward and backward as one C++ autograd function over them.

An eager PyTorch estimator makes a dozen passes over its tensors and, on small ones, spends most of
its time dispatching them and running the Python of its ``autograd.Function``; the operator does
the draw in one kernel pass and the backward in one more, without Python in between. Built with
OpenMP where the compiler has it, large calls use PyTorch's own OpenMP threads. They give the same
draws as the PyTorch path (the same uniforms, the same float64 prefix sums) and the same gradients
up to rounding (the Gumbel rules' noise comes from PyTorch's generator on both paths). They run on
contiguous float32 and float64 CPU tensors; everything else (CUDA, other dtypes, ``torch.compile``)
takes the PyTorch path, and under ``create_graph=True`` the operator's backward calls the
differentiable Python one. The operator is compiled against this PyTorch's headers; where that
fails, the kernels load alone (:mod:`ctypes`) under the Python autograd Function.

They are off by default (nothing is compiled); ``REINMAX_NATIVE=1`` or :func:`set_native_kernels`
turns them on, and :func:`native_kernels_status` says which path is used.
``benchmarks/svi_kernels.py`` measures what they change in whole SVI steps.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from reinmax_core.rules import ANCHOR_KINDS, ANCHOR_WEIGHTS
from reinmax_kernels import KERNELS_SOURCE, TORCH_ESTIMATOR_SOURCE, NativeKernels, build

from .validation import raise_nan_rows

if TYPE_CHECKING:
    from .estimators import AnchorTerm

__all__ = ["native_kernels_status", "set_native_kernels"]

SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}
OPENMP = ("-fopenmp",)


def _declare(library: ctypes.CDLL) -> None:
    pointer, integer, real = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    for suffix in SUFFIXES.values():
        draw = getattr(library, f"reinmax_draw_{suffix}")
        draw.argtypes = [pointer, pointer, integer, integer, pointer, pointer, ctypes.c_int]
        draw.restype = integer
        combine = getattr(library, f"reinmax_combine_{suffix}")
        combine.argtypes = [pointer, pointer, integer] + [pointer] * 4 + [real, integer, integer]
        combine.argtypes += [pointer, ctypes.c_int]
        combine.restype = ctypes.c_int


def _torch_flags() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Compile and link flags for a library that uses this PyTorch's C++ API (its headers, its
    ABI, its libraries; the version enters the build's hash)."""
    root = Path(torch.__file__).parent
    compile_flags = (
        f"-I{root / 'include'}",
        f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        f"-DREINMAX_TORCH_VERSION={torch.__version__}",
    )
    lib = root / "lib"
    return compile_flags, (f"-L{lib}", f"-Wl,-rpath,{lib}", "-ltorch", "-ltorch_cpu", "-lc10")


class EstimatorOperator:
    """``torch.ops.reinmax.estimate`` (``torch_estimator.cc``), the kernels with a C++ autograd
    function, once loaded: a process loads one such library (a second would register the
    operators again). ``failure`` says why it is not, where its build failed."""

    operator = None
    failure = ""
    registrations: list = []
    differentiable_backward: Callable | None = None
    """The operator's ``create_graph`` backward in Python, given by
    :func:`register_differentiable_backward` (``pyro_reinmax.estimators`` does on import)."""


def register_differentiable_backward(function: Callable) -> None:
    """Give the estimator operator its ``create_graph`` backward,
    ``reinmax::differentiable_backward`` (differentiable PyTorch operations, in
    :mod:`pyro_reinmax.estimators`, which this module does not import); registered with the
    operator when it loads."""
    EstimatorOperator.differentiable_backward = function


def _load_operator() -> Path | None:
    """Build and load the kernels with the estimator operator; None (and the reason in
    :class:`EstimatorOperator`) if that fails. Its Python half, the ``create_graph`` backward, is
    registered here."""
    if EstimatorOperator.operator is not None:
        return None
    compile_flags, link_flags = _torch_flags()
    sources = [KERNELS_SOURCE, TORCH_ESTIMATOR_SOURCE]
    try:
        flags = (OPENMP + compile_flags, OPENMP + link_flags)
        path = build("reinmax_torch_estimator", sources, *flags)
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as error:
        lines = str(error).splitlines()  # the command, then the compiler's first error
        EstimatorOperator.failure = " ".join(lines[:1] + [x for x in lines if "error" in x][:1])
        return None
    if EstimatorOperator.differentiable_backward is None:
        raise RuntimeError("pyro_reinmax.estimators registers the operator's backward on import")
    library = torch.library.Library("reinmax", "IMPL")
    library.impl(
        "differentiable_backward",
        EstimatorOperator.differentiable_backward,
        "CompositeImplicitAutograd",
    )
    EstimatorOperator.registrations.append(library)
    EstimatorOperator.operator = torch.ops.reinmax.estimate.default
    return path


def _load() -> ctypes.CDLL:
    """Build (with OpenMP, else without) and load the kernels, with the estimator operator where
    it builds. Linked against ``libgomp.so.1``, they share the copy PyTorch has loaded, and so
    its threads."""
    path = _load_operator()
    if path is None:
        try:
            path = build("reinmax_torch", [KERNELS_SOURCE], OPENMP, OPENMP)
        except RuntimeError:
            path = build("reinmax_torch", [KERNELS_SOURCE])
    library = ctypes.CDLL(str(path))
    _declare(library)
    return library


KERNELS = NativeKernels("pyro_reinmax", "PyTorch", _load)


def set_native_kernels(enabled: bool | None) -> None:
    """Use the CPU kernels (True: build them now, raising if that fails), never (False), or as
    ``REINMAX_NATIVE`` says (None; off where it is unset, the default: nothing is compiled)."""
    KERNELS.set(enabled)


def native_kernels_status() -> str:
    """Which path the CPU estimators take, and why."""
    status = KERNELS.status()
    if KERNELS.on and EstimatorOperator.operator is None and EstimatorOperator.failure:
        status += (
            "; the estimator operator (C++) did not build, so the estimators run as a Python "
            f"autograd Function on the kernels ({EstimatorOperator.failure})"
        )
    return status


def usable(tensor: Tensor) -> bool:
    """Whether the kernels take this tensor: a contiguous float32 or float64 CPU tensor outside
    ``torch.compile`` tracing, with the kernels on and built (built on the first call)."""
    return (
        KERNELS.active()
        and tensor.device.type == "cpu"
        and tensor.dtype in SUFFIXES
        and type(tensor) is torch.Tensor
        and tensor.is_contiguous()
        and not torch.compiler.is_compiling()
    )


def operator_usable(logits: Tensor) -> bool:
    """Whether :func:`estimate` takes these logits: :func:`usable`, with the operator built."""
    return usable(logits) and EstimatorOperator.operator is not None


NAN_ROWS = "reinmax::estimate: a row of softmax(logits) is NaN"
"""The operator's error for a NaN row (``kNanRows`` in ``torch_estimator.cc``)."""


def estimate(
    logits: Tensor, recipe: list[float], rule_name: str, option_values: list[float], validate: bool
) -> tuple[Tensor, Tensor]:
    """``(sample, probs)`` from the estimator operator for :func:`operator_usable` logits and the
    rule's :func:`~pyro_reinmax.estimators.operator_arguments`; a NaN row of ``softmax(logits)``
    raises :func:`~pyro_reinmax.validation.raise_nan_rows`'s error where ``validate``."""
    try:
        return EstimatorOperator.operator(logits, recipe, rule_name, option_values, validate)
    except ValueError as error:
        if NAN_ROWS not in str(error):
            raise
    raise_nan_rows()


def draw_index(probs: Tensor, uniforms: Tensor) -> tuple[Tensor, int]:
    """Indices ``(..., 1)`` of the first prefix sum of each row above ``uniforms * total`` (as
    :func:`pyro_reinmax.sampling.draw_index`), and the number of rows whose total is NaN.
    ``probs`` must be :func:`usable`; ``uniforms`` contiguous float64 of shape ``(..., 1)``."""
    index = torch.empty(probs.shape[:-1] + (1,), dtype=torch.int64)
    nan_rows = getattr(KERNELS.library, f"reinmax_draw_{SUFFIXES[probs.dtype]}")(
        probs.data_ptr(),
        uniforms.data_ptr(),
        index.numel(),
        probs.shape[-1],
        index.data_ptr(),
        None,  # the one-hot sample: the operator has the kernel write it, this path scatters
        torch.get_num_threads(),
    )
    if nan_rows < 0:
        raise MemoryError("pyro_reinmax's draw kernel could not allocate its scratch memory.")
    return index, nan_rows


def kernel_weights(term: AnchorTerm, dtype: torch.dtype) -> tuple[float, ...]:
    """An :class:`~pyro_reinmax.estimators.AnchorTerm`'s :data:`ANCHOR_WEIGHTS` numbers as
    ``kernels.c`` reads them: :math:`(w_y, w_D, c)`, the inverse temperature (capped at the
    largest finite ``dtype`` number; -1 where the values are the anchor), the kind
    (:data:`~reinmax_core.rules.ANCHOR_KINDS`) and the gap (0 without)."""
    inverse = (
        -1.0 if term.temperature is None else min(1.0 / term.temperature, torch.finfo(dtype).max)
    )
    kind = ANCHOR_KINDS["gap" if term.gap is not None else term.conditional]
    gap = term.gap or 0.0
    return (term.tempered_weight, term.sample_weight, term.scale, inverse, float(kind), gap)


def combine(
    terms: list[AnchorTerm],
    probs: Tensor,
    index: Tensor,
    g: Tensor,
    h: Tensor | None,
    probs_scale: float,
) -> Tensor:
    r""":math:`\sum_i c_i \sum_s J(w_{y,i}\, y_{i,s} + w_{D,i} D)\, g + J(\pi_0)(h + b g)` over
    anchor terms ``(values, w_y, w_D, c, temperature, conditional)``
    (:class:`~pyro_reinmax.estimators.AnchorTerm`, whose anchors the kernel computes from
    ``values`` of shape ``(S, ..., K)``). :math:`b` is
    ``probs_scale``, ``h`` None for zero. ``probs`` must be :func:`usable`; ``index``, ``g``,
    ``h`` and the values are made contiguous (int64, and of its dtype)."""
    dtype = probs.dtype
    index = _contiguous(index, torch.int64)
    kept = []  # the contiguous values, alive until the call returns
    pointers: list[int] = []
    weights: list[float] = []
    row_bytes = probs.numel() * probs.element_size()
    for term in terms:
        values = _contiguous(term.values, dtype)
        kept.append(values)
        sets = values.shape[0]
        pointers.extend(values.data_ptr() + s * row_bytes for s in range(sets))
        weights.extend(kernel_weights(term, dtype) * sets)
    g = _contiguous(g, dtype)
    h = None if h is None else _contiguous(h, dtype)
    out = torch.empty_like(probs)
    count = len(pointers)
    status = getattr(KERNELS.library, f"reinmax_combine_{SUFFIXES[dtype]}")(
        (ctypes.c_void_p * count)(*pointers),
        (ctypes.c_double * (ANCHOR_WEIGHTS * count))(*weights),
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
