"""Arithmetic on log-probabilities whose ``-inf`` entries (masked categories) stay exact and whose
gradients stay finite (JAX).

Zero probabilities are structural zeros: their categories are never drawn and their parameters
receive a zero gradient (the limit of every estimator here, whose backward is proportional to the
probability of the category).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array


def safe_log(probs: Array) -> Array:
    """``log(probs)``, exactly ``-inf`` where ``probs == 0``, with a zero gradient there."""
    positive = probs > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, probs, 1.0)), -jnp.inf)


def select(one_hot: Array, values: Array) -> Array:
    r""":math:`\sum_k z_k v_k` over the last axis, linear in :math:`z`, with ``-inf`` entries of
    ``v`` contributing 0 where :math:`z_k = 0` and ``-inf`` where :math:`z_k > 0`.

    The gradient with respect to :math:`z_k` is :math:`v_k`, or 0 where :math:`v_k = -\infty`. This
    is the categorical log-mass :math:`\log p(z) = \sum_k z_k \log \pi_k` when ``values`` are
    log-probabilities, and the mixture likelihood :math:`\sum_k z_k \log p_k(x)` when they are
    component log-densities. Shapes broadcast (enumerated values included).
    """
    masked = jnp.isneginf(values)
    indicator = jnp.result_type(float)
    total = _contract(one_hot, jnp.where(masked, 0.0, values))
    hits = _contract((one_hot != 0).astype(indicator), masked.astype(indicator))
    return jnp.where(hits > 0, -jnp.inf, total)


def _contract(one_hot: Array, values: Array) -> Array:
    """``(one_hot * values).sum(-1)``, as a contraction where the one-hots broadcast against
    larger values (enumerated one-hots ``(K, 1, ..., K)`` against ``(..., N, K)`` would build a
    ``(K, ..., N, K)`` product), else as a fused product and sum (a batched contraction of
    one-hots as large as the product, ``(E, N, K)`` against ``(N, K)``, transposes them)."""
    shape = jnp.broadcast_shapes(jnp.shape(one_hot), jnp.shape(values))
    if math.prod(shape) <= jnp.size(one_hot):
        return (one_hot * values).sum(-1)
    return jnp.einsum("...k,...k->...", one_hot, values)


def categorical_kl(p_logits: Array, q_logits: Array) -> Array:
    r""":math:`\mathrm{KL}(p \| q) = \sum_k p_k (\log p_k - \log q_k)` from normalised
    log-probabilities.

    Terms with :math:`p_k = 0` are 0 (with zero gradient); a term with :math:`p_k > 0 = q_k` is
    :math:`+\infty`.
    """
    p_probs = jnp.exp(p_logits)
    support = p_probs > 0
    difference = jnp.where(support, p_logits, 0.0) - jnp.where(support, q_logits, 0.0)
    return (p_probs * difference).sum(-1)
