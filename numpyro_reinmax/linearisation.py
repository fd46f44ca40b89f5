r"""Each model factor linearised in its sampled discrete parents, one variable at a time (JAX).

A factor :math:`\log f(z_1, \dots, z_m)` of one-hot variables has the *multilinear extension*
:math:`F(z) = \sum_c (\prod_i z_{i, c_i}) \log f(c)`. At a one-hot sample :math:`D` it equals
:math:`\log f(D)`, and its gradient in :math:`z_i[k]` is :math:`\log f(z_i = k, z_{-i} = D_{-i})`.
The factor is evaluated along one *perturbation dimension* (:mod:`reinmax_core.perturbation`):
element :math:`(s, k)` sets the variables of slot :math:`s` to :math:`k`, the others at their
draw. With :math:`L_{(s, k)}` the factor there and :math:`L_D` its value at the sample,
:func:`linearise` returns

.. math:: L_D + \sum_i \sum_k \big(z_i[k] - \operatorname{sg}(z_i[k])\big) L_{(s_i, k)},

whose value is :math:`\log f(D)` and whose gradient is :math:`F`'s: in :math:`z_i[k]`,
:math:`L_{(s_i, k)}`; in the model's parameters, :math:`\log f(D)`'s. A setting the model
forbids (:math:`L = -\infty`) contributes no gradient, as in
:func:`~numpyro_reinmax.masking.select`.

Inside NumPyro's ``scan`` a factor is stacked over steps on its first axis; a site's elements
then depend on the step (:func:`linearise` takes them per step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution

from .kl import discrete_log_probs


def on_elements(per_category, event_dims: int, dim: int, time: bool = False):
    """A site's ``batch + event + (K,)`` array with its variables' categories moved to axis
    ``dim`` (negative), variable-major as the site's elements, batch axes aligned on the right.
    With ``time``, the first axis is a ``scan``'s steps, kept first."""
    batch = jnp.shape(per_category)[: jnp.ndim(per_category) - event_dims - 1]
    flat = jnp.moveaxis(per_category.reshape(batch + (-1,)), -1, 0)
    steps = ()
    if time:
        steps, batch = batch[:1], batch[1:]
        flat = jnp.moveaxis(flat, 1, 0)
    padding = (1,) * (-dim - 1 - len(batch))
    return flat.reshape(steps + jnp.shape(flat)[len(steps) : len(steps) + 1] + padding + batch)


def site_values(index, event_dims: int, settings, dim: int, covers: bool, time: bool = False):
    """A site's categories at every element of the perturbation dimension (axis ``dim``):
    ``settings`` (``(E, variables)``; with ``time``, ``(steps, E, variables)`` for a site whose
    first axis is a ``scan``'s steps) where they set them, the drawn ``index`` elsewhere. With
    ``covers`` (every element sets every variable) the values do not depend on the draw: their
    batch axes are left at size 1, so the model broadcasts them as it would enumerated
    values."""
    steps = jnp.shape(index)[:1] if time else ()
    batch = jnp.shape(index)[len(steps) : jnp.ndim(index) - event_dims]
    event = jnp.shape(index)[jnp.ndim(index) - event_dims :]
    padding = (1,) * (-dim - 1 - len(batch))
    shape = steps + jnp.shape(settings)[len(steps) : len(steps) + 1] + padding
    settings = settings.reshape(shape + (1,) * len(batch) + event)
    if covers:
        return settings
    drawn = index.reshape(steps + (1,) + padding + batch + event) if time else index
    return jnp.where(settings >= 0, settings, drawn)


def linearise(log_factor, dim: int, base, terms):
    """The linearised factor, with the perturbation dimension ``dim`` kept as a size-1 axis.

    Args:
        log_factor: the factor at every element (axis ``dim``).
        base: ``(elements, drawn)`` of one parent variable: its elements and its drawn one-hot
            on axis ``dim`` (:func:`on_elements`); the factor at the sample is read there.
        terms: ``(elements, differences)`` of every parent: its elements and its one-hot draw
            minus the same, detached, on axis ``dim``.

    ``elements`` are a NumPy array of element indices, or ``(table, phases)`` for a factor
    stacked over ``scan`` steps: row ``r`` (its first axis) takes ``table[phases[r]]``.
    Contiguous indices are read as slices.
    """
    axis = jnp.ndim(log_factor) + dim

    def read(indices):
        indices = np.asarray(indices)
        if np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
            return jax.lax.slice_in_dim(
                log_factor, int(indices[0]), int(indices[-1]) + 1, axis=axis
            )
        return jnp.take(log_factor, indices, axis=axis)

    def at(elements):
        if not isinstance(elements, tuple):
            return read(elements)
        table, phases = elements
        rows = (jnp.ndim(log_factor) - 1) * (1,)
        selected = 0.0
        for phase, indices in enumerate(table):
            chosen = (phases == phase).reshape(phases.shape + rows)
            selected = jnp.where(chosen, read(indices), selected)
        return selected

    elements, drawn = base
    total = jnp.where(drawn, at(elements), 0.0).sum(axis, keepdims=True)
    for elements, differences in terms:
        settings = at(elements)
        settings = jnp.where(jnp.isinf(settings), 0.0, settings)  # NaN passes
        total = total + (settings * differences).sum(axis, keepdims=True)
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
