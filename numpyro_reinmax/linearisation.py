r"""Each model factor linearised in its sampled discrete parents, one variable at a time (JAX).

A factor :math:`\log f(z_1, \dots, z_m)` of one-hot variables has the *multilinear extension*
:math:`F(z) = \sum_c (\prod_i z_{i, c_i}) \log f(c)`. At a one-hot sample :math:`D` it equals
:math:`\log f(D)`, and its gradient in :math:`z_i[k]` is :math:`\log f(z_i = k, z_{-i} = D_{-i})`.
The factor is evaluated along one *perturbation dimension* (:mod:`reinmax_core.perturbation`):
element 0 at :math:`D`, element :math:`(s, j)` with the variables of slot :math:`s` moved from
:math:`d` to :math:`(d + j) \bmod K`. :func:`linearise` then returns

.. math:: L_0 + \sum_i \sum_{j=1}^{K_i - 1} \big(z_i[d_i + j] - \operatorname{sg}(z_i[d_i + j])\big)
    \big(L_{(s_i, j)} - L_0\big),

whose value is :math:`\log f(D)` and whose gradient in :math:`z_i` is :math:`F`'s, up to a shift
common to every category (which every estimator's backward :math:`J(p)\,g` removes; with it, a
factor that does not depend on :math:`z_i` gives it exactly zero). A change the model forbids
(:math:`L = -\infty`) contributes no gradient.

Inside NumPyro's ``scan`` a factor is stacked over steps on its first axis; a site's elements
then depend on the step (:func:`linearise` takes them per step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution

from .kl import discrete_log_probs


def shifted_differences(one_hot, index, event_dims: int, dim: int, time: bool = False):
    r""":math:`z[d + j] - \operatorname{sg}(z[d + j])` for :math:`j = 1, \dots, K - 1` and every
    variable of a site, zero-valued, on axis ``dim`` (negative) in the order of the site's
    elements (variable-major), its batch axes aligned on the right. With ``time``, the first
    axis of ``one_hot`` and ``index`` is a ``scan``'s steps, kept first.

    ``one_hot``: ``batch + event + (K,)``; ``index``: the drawn categories, ``batch + event``;
    ``event_dims``: the number of event axes before the categories.
    """
    categories = jnp.shape(one_hot)[-1]
    shifts = jnp.arange(1, categories)
    shifted = jnp.take_along_axis(one_hot, (index[..., None] + shifts) % categories, -1)
    shifted = shifted - jax.lax.stop_gradient(shifted)
    batch = jnp.shape(shifted)[: jnp.ndim(shifted) - event_dims - 1]
    flat = jnp.moveaxis(shifted.reshape(batch + (-1,)), -1, 0)
    if time:
        steps, batch = batch[:1], batch[1:]
        flat = jnp.moveaxis(flat, 1, 0)
    else:
        steps = ()
    padding = (1,) * (-dim - 1 - len(batch))
    return flat.reshape(steps + jnp.shape(flat)[len(steps) : len(steps) + 1] + padding + batch)


def perturbed_index(index, event_dims: int, shifts, dim: int, time: bool = False):
    """The categories of a site at every element of the perturbation dimension: ``index`` moved
    by ``shifts`` (``(E, variables)``; with ``time``, ``(steps, E, variables)`` for a site whose
    first axis is a ``scan``'s steps), with the elements on axis ``dim`` (negative, right of the
    steps) and the batch axes aligned on the right; values modulo the number of categories are
    left to the caller."""
    index = index if time else index[None]
    batch = jnp.shape(index)[1 : jnp.ndim(index) - event_dims]
    event = jnp.shape(index)[jnp.ndim(index) - event_dims :]
    shifts = shifts if time else shifts[None]
    moves = shifts.reshape(jnp.shape(shifts)[:2] + (1,) * len(batch) + event)
    moved = index[:, None] + moves
    padding = (1,) * (-dim - 1 - len(batch))
    moved = moved.reshape(jnp.shape(moved)[:2] + padding + jnp.shape(moved)[2:])
    return moved if time else moved[0]


def linearise(log_factor, dim: int, terms):
    """The factor's value at element 0 of axis ``dim`` (kept as a size-1 axis) plus, for each
    parent, its :func:`shifted_differences` times the factor's change at the parent's elements.

    ``terms``: ``(elements, differences)`` pairs; ``elements`` an integer array of the parent's
    elements, or one per row of a factor stacked over ``scan`` steps (shape ``(steps, n)``,
    broadcast against the factor's first axis)."""
    if jnp.ndim(log_factor) < -dim or jnp.shape(log_factor)[dim] == 1:
        return log_factor  # no element changes it
    axis = jnp.ndim(log_factor) + dim
    base = jax.lax.slice_in_dim(log_factor, 0, 1, axis=axis)
    total = base
    for elements, differences in terms:
        if jnp.ndim(elements) == 1:
            change = jnp.take(log_factor, elements, axis=axis)
        else:  # per step: (steps, n) against the factor's first axis
            shape = [1] * jnp.ndim(log_factor)
            shape[0], shape[axis] = jnp.shape(elements)
            change = jnp.take_along_axis(log_factor, elements.reshape(shape), axis=axis)
        change = change - base
        change = jnp.where(jnp.isfinite(change), change, 0.0)
        total = total + (change * differences).sum(axis, keepdims=True)
    return total


def category_log_probs(fn):
    r""":math:`\log p(k)` for every category :math:`k` of every variable of ``fn`` (a
    distribution with finite enumerable support, possibly under ``Independent``, ``Masked`` and
    ``Expanded`` wrappers): broadcastable to ``fn.batch_shape + event + (K,)``, where ``event``
    is ``fn``'s event shape without a one-hot's category axis. Masked entries are 0."""
    masks, event_dims = [], 0
    while isinstance(fn, Independent | MaskedDistribution | ExpandedDistribution):
        if isinstance(fn, MaskedDistribution):
            mask = jnp.asarray(fn._mask)
            masks.append(mask.reshape(jnp.shape(mask) + (1,) * event_dims))
        elif isinstance(fn, Independent):
            event_dims += fn.reinterpreted_batch_ndims
        fn = fn.base_dist
    log_probs = discrete_log_probs(fn)
    if log_probs is None:  # any other finite support: score each of its values
        log_probs = jnp.moveaxis(fn.log_prob(fn.enumerate_support(expand=False)), 0, -1)
    for mask in masks:
        log_probs = jnp.where(mask[..., None], log_probs, 0.0)
    return log_probs
