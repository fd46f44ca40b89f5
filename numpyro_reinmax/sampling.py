"""Exact one-hot draws from a categorical distribution by inverse-CDF sampling (JAX).

For each row, with cumulative sums :math:`c_k = \\sum_{j \\le k} p_j` and one uniform
:math:`u \\sim U[0, c_{K-1})`, the drawn category is the first :math:`k` with :math:`c_k > u`.
Category :math:`k` is drawn with probability :math:`(c_k - c_{k-1}) / c_{K-1}`, so a
zero-probability (masked) category is never drawn, also at the end of the row. This is one uniform
per row instead of one Gumbel per logit (``jax.random.categorical``).

The sums are accumulated in float64 when ``jax_enable_x64`` is on, else in float32; then a
category's probability is exact up to float32 rounding of the running sum (an absolute error of
about 6e-8 per category). The CPU kernel (:mod:`numpyro_reinmax.native`) always sums in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import DTypeLike

from . import native


def accumulation_dtype() -> DTypeLike:
    """float64 where JAX allows it, else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def draw_index(key: Array, probs: Array) -> Array:
    """Draw one category per row of ``probs`` (shape ``(..., K)``); returns int indices ``(...)``.

    Rows need not be normalised; they must be finite, non-negative and not all zero. On the CPU
    the search runs in :mod:`numpyro_reinmax.native`'s kernel when it is built (from 16
    categories on).
    """
    uniforms = jax.random.uniform(key, probs.shape[:-1] + (1,), accumulation_dtype())[..., 0]
    if native.usable_rows(probs):
        return native.draw_index(probs, uniforms, index_by_cumsum)
    return index_by_cumsum(probs, uniforms)


def index_by_cumsum(probs: Array, uniforms: Array) -> Array:
    """The first :math:`k` with :math:`c_k > u c_{K-1}` per row, by ``jnp.cumsum``."""
    cdf = jnp.cumsum(probs.astype(accumulation_dtype()), -1)
    total = cdf[..., -1:]
    u = uniforms[..., None] * total
    # uniform * total can round up to total; keep u strictly below it.
    u = jnp.minimum(u, jnp.nextafter(total, jnp.zeros_like(total)))
    return (cdf <= u).sum(-1)


def perturbed_logits_given_index(logits: Array, index: Array, exponentials: Array) -> Array:
    r"""Gumbel-perturbed logits :math:`z = \theta + G` drawn conditionally on
    :math:`\arg\max z = ` ``index`` (int, shape ``(...)``).

    With :math:`E_k` independent standard exponentials, the maximum is
    :math:`z_{k^*} = \log \sum_j e^{\theta_j} - \log E_{k^*}` and every other entry is a Gumbel
    with location :math:`\theta_j` truncated below it,
    :math:`z_j = -\log(E_j e^{-\theta_j} + e^{-z_{k^*}})` (Maddison et al., 2014). An exact
    categorical ``index`` followed by this draw has the joint law of Gumbel-max, without forming
    ``logits + G`` (which loses the draw once the logits dwarf the noise). ``-inf`` logits stay
    ``-inf``.
    """
    log_exponentials = jnp.log(exponentials)
    at_index = jax.nn.one_hot(index, logits.shape[-1], dtype=bool)
    top = jax.nn.logsumexp(logits, -1, keepdims=True) - jnp.take_along_axis(
        log_exponentials, index[..., None], -1
    )
    return jnp.where(at_index, top, -jnp.logaddexp(log_exponentials - logits, -top))


def draw_exponentials(key: Array, shape: tuple[int, ...], dtype: DTypeLike) -> Array:
    """Standard exponentials from ``jax.random.exponential`` (also where the CPU kernels run, so
    a key gives the same noise on every path), bounded below by the dtype's smallest normal
    number (so that their logarithm is finite)."""
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    return jnp.maximum(jax.random.exponential(key, shape, dtype), jnp.finfo(dtype).tiny)


def draw_one_hot(key: Array, probs: Array) -> Array:
    """Exact one-hot draw from ``Categorical(probs)`` with the shape and dtype of ``probs``."""
    return jax.nn.one_hot(draw_index(key, probs), probs.shape[-1], dtype=probs.dtype)
