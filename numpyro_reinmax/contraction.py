r"""Linear contraction of an enumerated log-factor with sampled one-hot values (JAX).

A factor :math:`\log f(c)` evaluated at every configuration :math:`c = (c_1, \dots, c_m)` of its
discrete parents (parallel enumeration puts each parent on a dimension of its own) has the
*multilinear extension* in the parents' one-hot values :math:`z_i`

.. math:: F(z_1, \dots, z_m) = \sum_c \Big(\prod_i z_{i, c_i}\Big) \log f(c).

At one-hot :math:`z` it is :math:`\log f` at the sampled configuration; its gradient in
:math:`z_i` does not depend on :math:`z_i`. Contracting one parent's dimension at a time with its
one-hot weights computes :math:`F` (the contractions commute).
"""

from __future__ import annotations

import jax.numpy as jnp


def contract_dim(log_factor, weights, dim: int):
    r""":math:`\sum_k w_k \log f_k` along ``dim`` (negative), kept as a size-1 dimension.

    ``weights`` broadcasts against ``log_factor`` with the categories on ``dim``. ``-inf`` entries
    stay exact: they contribute 0 where their weight is 0 and ``-inf`` where it is not, and their
    gradients are 0 (finite), as in :func:`~numpyro_reinmax.masking.select`.
    """
    masked = jnp.isneginf(log_factor)
    total = (weights * jnp.where(masked, 0.0, log_factor)).sum(dim, keepdims=True)
    hits_masked = ((weights != 0) & masked).any(dim, keepdims=True)
    return jnp.where(hits_masked, -jnp.inf, total)


def weights_on_dim(one_hot, dim: int, time_dim: int | None = None):
    """Move the category axis (last) of ``one_hot`` (``batch_shape + (K,)``) to the enumeration
    dimension ``dim`` of a log-factor whose batch axes align with ``batch_shape`` on the right.

    With ``time_dim`` (a factor of the scanned steps of NumPyro's ``scan``, left of ``dim``),
    ``one_hot`` is ``(steps,) + batch_shape + (K,)`` and its first axis goes to ``time_dim``.
    """
    if time_dim is None:
        batch_dims = jnp.ndim(one_hot) - 1
        categories = jnp.moveaxis(one_hot, -1, 0)
        padding = (1,) * (-dim - 1 - batch_dims)
        return categories.reshape(categories.shape[:1] + padding + categories.shape[1:])
    steps, *batch, categories = jnp.shape(one_hot)
    shape = [1] * -time_dim
    shape[time_dim], shape[dim] = steps, categories
    if batch:
        shape[-len(batch) :] = batch
    return jnp.moveaxis(one_hot, -1, 1).reshape(shape)
