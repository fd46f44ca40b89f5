r"""Single-evaluation gradient estimators for one-hot categorical samples (JAX).

Every estimator maps ``(key, logits, temperature)`` to ``(sample, probs)``: ``probs =
softmax(logits)`` over the last axis and ``sample`` an exact one-hot draw from
``Categorical(probs)``. The temperature never changes the draw; the estimators differ only in their
backward pass, a ``jax.custom_vjp``. With :math:`g = \partial L / \partial \text{sample}`,
:math:`h = \partial L / \partial \text{probs}`, :math:`J(p) = \operatorname{diag}(p) - p p^\top` and
:math:`\tau` the temperature:

* ReinMax (Liu et al., 2023), second-order accurate (Heun's method):
  :math:`\pi_1 = (\operatorname{softmax}(\theta/\tau) + D) / 2`,
  :math:`\nabla_\theta = 2 J(\pi_1) g - \tfrac12 J(\pi_0) g + J(\pi_0) h`.
* Straight-through (Bengio et al., 2013), first order:
  :math:`\nabla_\theta = J(\operatorname{softmax}(\theta/\tau))\, g / \tau + J(\pi_0) h`.
* Straight-through Gumbel-softmax (Jang et al., 2017): the sample is
  :math:`\operatorname{onehot}(\arg\max(\theta + G))` with Gumbel noise :math:`G`, and with
  :math:`y = \operatorname{softmax}((\theta + G)/\tau)`,
  :math:`\nabla_\theta = J(y)\, g / \tau + J(\pi_0) h`. The category is drawn exactly by
  inverse CDF and :math:`\theta + G` conditionally on it
  (:func:`~numpyro_reinmax.sampling.perturbed_logits_given_index`): the same joint law, exact at
  every magnitude of the logits.

All three share one backward, :math:`c\, J(a) g + J(\pi_0)(h + b\, g)` with anchor
:math:`a = w_y y + w_D D`. ``-inf`` logits mask categories: they are never drawn and receive a zero
(finite) gradient. The temperature receives no gradient. The functions work under ``jit``,
``vmap`` and ``grad`` of ``grad`` (the derivative of the estimated gradient at the fixed draw).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .sampling import draw_exponentials, draw_index, perturbed_logits_given_index
from .validation import check_event_array, check_logits, check_temperature, validation_enabled

__all__ = ["gumbel_straight_through", "reinmax", "straight_through"]


class Rule(NamedTuple):
    """An estimator's backward: anchor weights ``(w_y, w_D)``, whether the draw is Gumbel-max, and
    the scales ``c = anchor_scale / tau ** inverse_power`` and ``b = probs_scale``."""

    tempered_weight: float
    sample_weight: float
    anchor_scale: float
    inverse_temperature_power: int
    probs_scale: float
    gumbel: bool


RULES = {
    "reinmax": Rule(0.5, 0.5, 2.0, 0, -0.5, False),
    "straight_through": Rule(1.0, 0.0, 1.0, 1, 0.0, False),
    "gumbel_straight_through": Rule(1.0, 0.0, 1.0, 1, 0.0, True),
}


def largest_finite(value, dtype):
    """``value`` capped at the largest finite number of ``dtype``: a scale ``1 / tau`` for a tiny
    temperature then multiplies an exact zero into zero instead of NaN."""
    return jnp.minimum(value, jnp.finfo(dtype).max).astype(dtype)


def tempered_softmax(x, temperature):
    r""":math:`\operatorname{softmax}(x / \tau)` over the last axis, computed as
    :math:`\operatorname{softmax}((x - \max x) \cdot \min(1/\tau, \text{largest float}))`: the
    maximum maps to exactly 0, so no finite ``x`` and no ``tau > 0`` overflows to NaN (a tiny
    ``tau`` gives the one-hot limit). ``jax.nn.softmax(x / tau)`` gives NaN under ``jit`` for
    logits near 1e20 and more: XLA computes the two divisions inside it differently."""
    if isinstance(temperature, float) and temperature == 1.0:
        return jax.nn.softmax(x, -1)
    inverse = largest_finite(1.0 / jnp.asarray(temperature), x.dtype)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, -1, keepdims=True))
    return jax.nn.softmax(shifted * inverse, -1)


def softmax_vjp(p, v):
    r"""The softmax vector-Jacobian product :math:`J(p) v = p \odot (v - \langle p, v \rangle)`."""
    return p * (v - (p * v).sum(-1, keepdims=True))


def _forward(rule_name: str, key, logits, temperature):
    rule = RULES[rule_name]
    probs = jax.nn.softmax(logits, -1)
    if rule.gumbel:
        key, noise_key = jax.random.split(key)
        noise = draw_exponentials(noise_key, logits.shape, logits.dtype)
    else:
        noise = None
    index = draw_index(key, jax.lax.stop_gradient(probs))
    sample = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
    return (sample, probs), (logits, noise, index, probs, temperature)


def _backward(rule_name: str, residuals, cotangents):
    rule = RULES[rule_name]
    logits, noise, index, probs, temperature = residuals
    g, h = cotangents
    if noise is not None:
        tempered = tempered_softmax(perturbed_logits_given_index(logits, index, noise), temperature)
    elif isinstance(temperature, float) and temperature == 1.0:
        tempered = probs
    else:
        tempered = tempered_softmax(logits, temperature)
    anchor = rule.tempered_weight * tempered
    if rule.sample_weight:
        sample = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
        anchor = anchor + rule.sample_weight * sample
    scale = largest_finite(
        rule.anchor_scale / jnp.asarray(temperature) ** rule.inverse_temperature_power,
        logits.dtype,
    )
    # J(a) g before the scale: a huge scale (tiny temperature) then multiplies exact zeros
    grad = softmax_vjp(anchor, g) * scale + softmax_vjp(probs, h + rule.probs_scale * g)
    return None, grad, None


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _estimate(rule_name: str, key, logits, temperature):
    return _forward(rule_name, key, logits, temperature)[0]


_estimate.defvjp(_forward, _backward)

estimate = jax.jit(_estimate, static_argnums=0)
estimate.__doc__ = """``(sample, probs)`` with the backward of ``RULES[rule_name]``; no argument
checks. Compiled once per rule and input shape, so eager calls are fast too."""


def _estimator(rule_name: str, key, logits, temperature):
    temperature = check_temperature(temperature)
    logits = jnp.asarray(logits)
    if validation_enabled():
        check_logits(logits)  # dtype and shape; values only when concrete (not under jit, vmap)
    else:
        check_event_array("logits", logits)  # dtype and shape: no data-dependent work
    return estimate(rule_name, key, logits, temperature)


def reinmax(key, logits, temperature=1.0):
    r"""ReinMax: an exact one-hot draw with a second-order accurate backward.

    Args:
        key: a ``jax.random`` key.
        logits: unnormalised log-probabilities, shape ``(..., K)``; ``-inf`` masks a category.
        temperature: :math:`\tau > 0` of the backward's :math:`\operatorname{softmax}(\theta/\tau)`.
            At :math:`\tau = 1` the expected gradient is exact for any quadratic objective.

    Returns:
        ``(sample, probs)``: a one-hot draw ``D`` from ``Categorical(softmax(logits))`` and
        :math:`\pi_0 = \operatorname{softmax}(\theta)`. Backward:
        :math:`2 J(\pi_1) g - \tfrac12 J(\pi_0) g + J(\pi_0) h` with
        :math:`\pi_1 = (\operatorname{softmax}(\theta/\tau) + D)/2`.

    Logits are checked for NaN, +inf and fully masked rows when NumPyro validation is on and the
    values are concrete (outside ``jit``).
    """
    return _estimator("reinmax", key, logits, temperature)


def straight_through(key, logits, temperature=1.0):
    r"""Straight-through: an exact one-hot draw with backward
    :math:`J(\operatorname{softmax}(\theta/\tau))\, g / \tau + J(\pi_0) h`, the gradient of
    ``sample + s - stop_gradient(s)`` with ``s = softmax(logits / temperature)``.
    Arguments and returns as :func:`reinmax`."""
    return _estimator("straight_through", key, logits, temperature)


def gumbel_straight_through(key, logits, temperature=1.0):
    r"""Straight-through Gumbel-softmax: ``sample = onehot(argmax(logits + G))`` with Gumbel noise
    ``G`` (an exact categorical draw) and backward :math:`J(y)\, g / \tau + J(\pi_0) h` with
    :math:`y = \operatorname{softmax}((\theta + G)/\tau)`.
    Arguments and returns as :func:`reinmax`."""
    return _estimator("gumbel_straight_through", key, logits, temperature)
