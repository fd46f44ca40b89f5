"""Opt-in CPU kernels for JAX: the categorical draw and the backward of the single-anchor rules as
XLA FFI custom calls (:mod:`reinmax_kernels`).

``jnp.cumsum`` over the categories is the slowest step of a jitted ReinMax on the CPU (XLA scans it
in blocks, in several passes); the kernel finds the drawn category in one pass over each row with
float64 prefix sums. The backward kernel computes a rule's anchors (tempered, or from conditional
Gumbel noise, with a vectorised log and exp) and its Jacobian-vector products in one pass per row,
with the ``jnp`` path's JVP for ``grad`` of ``grad``. The Gumbel-noise rules' exponentials come
from ``jax.random`` on both paths (the same key gives the same noise). They run on float32 and
float64 arrays on the CPU, the draw and the backward on rows of :data:`MIN_CATEGORIES` or more
(shorter ones in large arrays); on other platforms (``jax.lax.platform_dependent``) and where the
kernels are off, the JAX path runs. Under ``vmap`` the batch axes are more rows. The draw is exact
either way; the two paths can differ in a draw whose uniform falls within rounding of a category
boundary (the JAX path sums in float32 unless ``jax_enable_x64`` is on).

They are off by default (nothing is compiled); ``REINMAX_NATIVE=1`` or :func:`set_native_kernels`
turns them on, and :func:`native_kernels_status` says which path is used.
``benchmarks/svi_kernels.py`` measures what they change in whole SVI steps.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import jax
import jax.numpy as jnp

from reinmax_kernels import KERNELS_SOURCE, XLA_HANDLERS_SOURCE, NativeKernels, build

__all__ = ["native_kernels_status", "set_native_kernels"]

DRAW_TARGET = "reinmax_draw"
MIN_CATEGORIES = 16
MIN_SHORT_ROW_ENTRIES = 4096
"""Rows of fewer than :data:`MIN_CATEGORIES` categories take the JAX path for the draw and the
backward in arrays of fewer than :data:`MIN_SHORT_ROW_ENTRIES` entries: XLA fuses a short row's
``cumsum`` and backward across rows into one cheap loop, and a custom call's fixed cost dominates
small arrays. Larger arrays of short rows go to the kernels, whose backward takes short rows a
chunk at a time (``benchmarks/speed.py``'s "time with / without kernels" column at 2
categories)."""
COMBINE_TARGET = "reinmax_combine"


def _load() -> ctypes.CDLL:
    """Build the kernels with their XLA handlers and register the draw for the CPU."""
    include = "-I" + jax.ffi.include_dir()
    library = ctypes.CDLL(
        str(build("reinmax_xla", [KERNELS_SOURCE, XLA_HANDLERS_SOURCE], [include]))
    )
    for target, handler in [
        (DRAW_TARGET, library.ReinmaxDraw),
        (COMBINE_TARGET, library.ReinmaxCombine),
    ]:
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler), platform="cpu")
    return library


KERNELS = NativeKernels("numpyro_reinmax", "JAX", _load)


def set_native_kernels(enabled: bool | None) -> None:
    """Use the CPU kernels (True: build them now, raising if that fails), never (False), or as
    ``REINMAX_NATIVE`` says (None; off where it is unset, the default: nothing is compiled).
    Clears JAX's compilation caches, so that functions traced before take the new path."""
    KERNELS.set(enabled)
    jax.clear_caches()


def native_kernels_status() -> str:
    """Which path the draw takes on the CPU, and why."""
    return KERNELS.status()


def usable(dtype) -> bool:
    """Whether the kernels take arrays of ``dtype``: float32 or float64, with the kernels on and
    built (built on the first call)."""
    return dtype in (jnp.float32, jnp.float64) and KERNELS.active()


def usable_rows(probs) -> bool:
    """Whether the draw and backward kernels take rows like ``probs``': :func:`usable` dtype, at
    least :data:`MIN_CATEGORIES` categories or :data:`MIN_SHORT_ROW_ENTRIES` entries."""
    large = probs.shape[-1] >= MIN_CATEGORIES or probs.size >= MIN_SHORT_ROW_ENTRIES
    return large and usable(probs.dtype)


def draw_index(probs, uniforms, fallback: Callable):
    """The index of the first float64 prefix sum of each row of ``probs`` above
    ``uniforms * total`` (``uniforms`` of shape ``probs.shape[:-1]``): the kernel on the CPU,
    ``fallback(probs, uniforms)`` elsewhere. ``probs`` must be :func:`usable_rows`."""
    index_type = jax.dtypes.canonicalize_dtype(jnp.int64)

    def kernel(probs, uniforms):
        result = jax.ShapeDtypeStruct(probs.shape[:-1], index_type)
        call = jax.ffi.ffi_call(DRAW_TARGET, result, vmap_method="broadcast_all")
        return call(probs, uniforms)

    return jax.lax.platform_dependent(probs, uniforms, cpu=kernel, default=fallback)


def combine(values, weights, probs, index, g, h, fallback: Callable):
    r"""One anchor term's backward
    :math:`c \sum_s J(w_y y_s + w_D D)\, g + J(\pi_0)(h + b g)` in one pass over each row on
    the CPU (``reinmax_combine`` of the kernels), ``fallback(values, weights, probs, index, g,
    h)`` elsewhere. ``values`` (shape ``(S,) + probs.shape``) give the anchors as
    :class:`~numpyro_reinmax.estimators.AnchorTerm` says; ``weights`` are
    :math:`(w_y, w_D, c, 1/\tau \text{ or } -1, \text{kind}, \text{gap}, b)` in
    ``probs.dtype`` (:func:`usable`). Under ``vmap`` each batch element has its own weights."""

    def kernel(values, weights, probs, index, g, h):
        result = jax.ShapeDtypeStruct(probs.shape, probs.dtype)
        call = jax.ffi.ffi_call(COMBINE_TARGET, result, vmap_method="broadcast_all")
        return call(probs, index, g, h, values, weights)

    return jax.lax.platform_dependent(
        values, weights, probs, index, g, h, cpu=kernel, default=fallback
    )
