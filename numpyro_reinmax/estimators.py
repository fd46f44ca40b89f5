r"""Single-evaluation gradient estimators for one-hot categorical samples (JAX).

Every estimator maps ``(key, logits, temperature)`` to ``(sample, probs)``: ``probs =
softmax(logits)`` over the last axis and ``sample`` an exact one-hot draw from
``Categorical(probs)``; the estimators differ only in their backward pass, a ``jax.custom_vjp``.
The rules and their formulas (ReinMax, straight-through, ST-Gumbel, GST, Gumbel-Rao, ReinMax-Rao,
ReinMax-CV) are :mod:`reinmax_core.rules`'; this module computes their anchors and
Jacobian-vector products on arrays. ``-inf`` logits mask categories: they are never drawn and
receive a zero (finite) gradient. The temperature receives no gradient. The functions work under
``jit``, ``vmap`` and ``grad`` of ``grad`` (the derivative of the estimated gradient at the fixed
draw).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike, DTypeLike

from reinmax_core.rules import ANCHOR_KINDS, RULES, Options, Rule
from reinmax_core.rules import rule_options as core_rule_options

from . import native
from .sampling import draw_exponentials, draw_index
from .validation import check_event_array, check_logits, check_temperature, validation_enabled

__all__ = [
    "gapped_straight_through",
    "gumbel_rao",
    "gumbel_straight_through",
    "reinmax",
    "reinmax_cv",
    "reinmax_rao",
    "straight_through",
]


class AnchorTerm(NamedTuple):
    r"""One term :math:`c \sum_s J(w_y y_s + w_D D)\, g` of a backward, over ``S`` anchors
    weighted alike: ``values`` of shape ``(S, ..., K)`` are the anchors :math:`y_s` where
    ``temperature`` is None, else logits :math:`x_s` with
    :math:`y_s = \operatorname{softmax}(x_s / \tau)`. With ``conditional`` (``"probs"`` or
    ``"midpoint"``) they are exponentials :math:`E_s` instead, and :math:`y_s` the Gumbel softmax
    drawn conditionally on :math:`D` at :math:`\pi_0` or at :math:`(\pi_0 + D)/2`
    (:func:`conditional_gumbel_anchors`)."""

    values: jax.Array
    tempered_weight: float
    sample_weight: float
    scale: jax.Array | float
    temperature: jax.Array | float | None = None
    conditional: str | None = None
    gap: float | None = None


def largest_finite(value: ArrayLike, dtype: DTypeLike) -> ArrayLike:
    """``value`` capped at the largest finite number of ``dtype``: a scale ``1 / tau`` for a tiny
    temperature then multiplies an exact zero into zero instead of NaN. A Python number is
    capped before it becomes an array (casting 1e39 to float32 would overflow)."""
    if isinstance(value, float | int):
        return jnp.asarray(min(value, float(jnp.finfo(dtype).max)), dtype)
    return jnp.minimum(value, jnp.finfo(dtype).max).astype(dtype)


def tempered_softmax(x: Array, temperature: ArrayLike) -> Array:
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


def softmax_vjp(p: Array, v: Array) -> Array:
    r"""The softmax vector-Jacobian product :math:`J(p) v = p \odot (v - \langle p, v \rangle)`."""
    return p * (v - (p * v).sum(-1, keepdims=True))


def gapped_logits(logits: Array, index: Array, gap: float) -> Array:
    r"""GST's shifted logits: :math:`\max\theta` at the drawn category and
    :math:`\min(\theta_j, \max\theta - \kappa)` elsewhere, so the drawn category leads every
    other by at least the gap :math:`\kappa`; ``-inf`` stays ``-inf``."""
    top = jnp.max(logits, -1, keepdims=True)
    at_index = jax.nn.one_hot(index, logits.shape[-1], dtype=bool)
    return jnp.where(at_index, top, jnp.minimum(logits, top - gap))


def masked_log(x: Array) -> Array:
    r""":math:`\log x` for :math:`x \ge 0`, with :math:`\log 0 = -\infty` taken off the
    derivative's path (through ``log`` at 0 a second derivative would be NaN: a masked category
    under ``grad`` of ``grad``)."""
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, 1)), -jnp.inf)


def midpoint_probs(probs: Array, index: Array) -> Array:
    r"""ReinMax's midpoint :math:`(\pi_0 + D)/2`, the probabilities at
    :math:`\theta_D = \log((\pi_0 + D)/2)` (a masked category stays at 0)."""
    return (probs + jax.nn.one_hot(index, probs.shape[-1], dtype=probs.dtype)) * 0.5


def _is_one(temperature: ArrayLike) -> bool:
    return isinstance(temperature, float) and temperature == 1.0


def conditional_gumbel_anchors(
    base: Array, index: Array, exponentials: Array, temperature: ArrayLike | None
) -> Array:
    r""":math:`y_s = \operatorname{softmax}((\log b + G_s)/\tau)` for Gumbel noise :math:`G_s`
    drawn conditionally on :math:`\arg\max(\log b + G_s) =` ``index``, one row per leading set
    ``s`` of ``exponentials`` (shape ``(S, ..., K)``); ``temperature`` None for 1.

    With :math:`E` the exponentials of
    :func:`~numpyro_reinmax.sampling.perturbed_logits_given_index`,
    :math:`e^{\log b_j + G_j} \propto w_j = b_j / (E_j + b_j E_D)` off the drawn category and
    :math:`w_D = 1 / E_D`, so :math:`y_s` is :math:`w^{1/\tau}` normalised, exact at any
    magnitude of the logits (only probabilities enter)."""
    at_index = jax.nn.one_hot(index, base.shape[-1], dtype=bool)
    e_top = jnp.sum(jnp.where(at_index, exponentials, 0), -1, keepdims=True)
    weights = jnp.where(at_index, 1 / e_top, base / (exponentials + base * e_top))
    if temperature is None:
        return weights / weights.sum(-1, keepdims=True)
    return tempered_softmax(masked_log(weights), temperature)


def conditional_gumbel_term(
    at: str, exponentials: Array, temperature: ArrayLike, scale: ArrayLike
) -> AnchorTerm:
    r"""The term :math:`c \sum_s J(y_s)\, g` over :func:`conditional_gumbel_anchors` at
    :math:`\pi_0` (``at="probs"``) or at the midpoint :math:`(\pi_0 + D)/2`."""
    temperature = None if _is_one(temperature) else temperature
    return AnchorTerm(exponentials, 1.0, 0.0, scale, temperature, at)


def _anchors(term: AnchorTerm, probs: Array, index: Array) -> Array:
    """The term's anchors :math:`y_s`, shape ``(S, ..., K)``."""
    if term.conditional is not None:
        base = probs if term.conditional == "probs" else midpoint_probs(probs, index)
        return conditional_gumbel_anchors(base, index, term.values, term.temperature)
    if term.temperature is None:
        return term.values
    if term.gap is not None:
        return tempered_softmax(gapped_logits(term.values, index, term.gap), term.temperature)
    return tempered_softmax(term.values, term.temperature)


def anchor_terms_vjp(terms: list[AnchorTerm], g: Array, index: Array, probs: Array) -> Array:
    r""":math:`\sum_i c_i \sum_s J(w_{y,i} y_{i,s} + w_{D,i} D)\, g`."""
    total = 0.0
    for term in terms:
        anchor = _anchors(term, probs, index) * term.tempered_weight
        if term.sample_weight:
            sample = jax.nn.one_hot(index, g.shape[-1], dtype=g.dtype)
            anchor = anchor + term.sample_weight * sample
        # J(a) g before the scale: a huge scale (tiny temperature) then multiplies exact zeros
        total = total + softmax_vjp(anchor, g).sum(0) * term.scale
    return total


def reinmax_cv_terms(
    logits: Array,
    index: Array,
    probs: Array,
    noise: Array,
    temperature: ArrayLike,
    options: Options,
) -> list[AnchorTerm]:
    r"""ReinMax's :math:`2 J(\pi_1) g` plus
    :math:`\tfrac{\eta}{\tau_2}(\tfrac1S \sum_s J(y_s) - J(y_0))\, g` at :math:`\theta_D`:
    ``noise[0]`` gives the unconditional Gumbel :math:`G_0 = -\log E_0`, the rest the
    conditional draws."""
    options = dict(options)
    eta = options["eta"]
    cv_temperature = options["cv_temperature"] or temperature
    midpoint = midpoint_probs(probs, index)
    scale = largest_finite(eta / jnp.asarray(cv_temperature), probs.dtype)
    conditional = conditional_gumbel_term(
        "midpoint", noise[1:], cv_temperature, scale / (len(noise) - 1)
    )
    unconditional = (masked_log(midpoint) - jnp.log(noise[0]))[None]
    return [
        AnchorTerm(logits[None], 0.5, 0.5, 2.0, temperature),
        conditional,
        AnchorTerm(unconditional, 1.0, 0.0, -scale, cv_temperature),
    ]


MULTI_TERM_RULES = {"reinmax_cv": reinmax_cv_terms}
"""The anchor terms of each rule whose ``Rule.terms`` names them."""


def rule_options(rule_name: str, options: dict | None = None) -> Options:
    """:func:`reinmax_core.rules.rule_options` with this backend's temperature check."""
    return core_rule_options(rule_name, options, check_temperature)


def _forward(
    rule_name: str, options: Options, key: Array, logits: Array, temperature: ArrayLike
) -> tuple[tuple[Array, Array], tuple]:
    rule = RULES[rule_name]
    probs = jax.nn.softmax(logits, -1)
    sets = rule.noise_count(options)
    if sets:
        key, noise_key = jax.random.split(key)
        noise = draw_exponentials(noise_key, (sets,) + logits.shape, logits.dtype)
    else:
        noise = None
    index = draw_index(key, jax.lax.stop_gradient(probs))
    sample = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
    return (sample, probs), (logits, noise, index, probs, temperature)


def anchor_weights(
    rule: Rule, temperature: ArrayLike, options: Options, dtype: DTypeLike
) -> AnchorTerm:
    r"""A single-anchor rule's :class:`AnchorTerm` without its values (None): the weights
    :math:`(w_y, w_D)`, the scale :math:`c`, split over the Gumbel rule's :math:`S` draws, the
    temperature of the anchor's softmax (None: the values are the anchor), where the Gumbel
    noise is drawn conditionally, and GST's gap."""
    power = rule.inverse_temperature_power
    scale = largest_finite(rule.anchor_scale / jnp.asarray(temperature) ** power, dtype)
    if rule.perturbation == "gumbel":
        tempered = None if _is_one(temperature) else temperature
        weights = (scale / rule.noise_count(options), tempered, rule.gumbel_at)
    else:
        tempered = rule.perturbation is not None or not _is_one(temperature)
        weights = (scale, temperature if tempered else None, None)
    gap = dict(options)["gap"] if rule.perturbation == "gap" else None
    return AnchorTerm(None, rule.tempered_weight, rule.sample_weight, *weights, gap=gap)


def anchor_terms(
    rule: Rule,
    options: Options,
    logits: Array | None,
    noise: Array | None,
    index: Array,
    probs: Array,
    temperature: ArrayLike,
) -> list[AnchorTerm]:
    """The rule's :class:`AnchorTerm` list: its own for a rule of several terms, else the single
    anchor: ``probs`` at temperature 1 without a perturbation, else the logits (GST's gap shifts
    them where the anchor is computed), or the exponentials of the conditional Gumbel draws."""
    if rule.terms is not None:
        return MULTI_TERM_RULES[rule.terms](logits, index, probs, noise, temperature, options)
    weights = anchor_weights(rule, temperature, options, probs.dtype)
    if rule.perturbation == "gumbel":
        values = noise
    else:
        values = (probs if weights.temperature is None else logits)[None]
    return [weights._replace(values=values)]


def terms_backward(
    terms: list[AnchorTerm], probs_scale: float, g: Array, index: Array, probs: Array, h: Array
) -> Array:
    r"""The backward :math:`\sum_i c_i \sum_s J(a_{i,s}) g + J(\pi_0)(h + b g)` of a rule's
    :class:`AnchorTerm` list in ``jnp`` operations (:math:`b` = ``probs_scale``)."""
    return anchor_terms_vjp(terms, g, index, probs) + softmax_vjp(probs, h + probs_scale * g)


@lru_cache(maxsize=64)
def _term_backward(
    tempered_weight: float,
    sample_weight: float,
    tempered: bool,
    conditional: str | None,
    gap: float | None,
    probs_scale: float,
) -> Callable:
    r"""One anchor term's backward :math:`c \sum_s J(a_s) g + J(\pi_0)(h + b g)` as a function
    of ``(values, scale, temperature, g, index, probs, h)``: the CPU kernel
    (:func:`numpyro_reinmax.native.combine`) where it runs, the same in ``jnp`` operations
    elsewhere. Its JVP is that of the ``jnp`` operations, so ``grad`` of ``grad`` differentiates
    the estimate."""

    def reference(values, scale, temperature, g, index, probs, h):
        term = AnchorTerm(
            values,
            tempered_weight,
            sample_weight,
            scale,
            temperature if tempered else None,
            conditional,
            gap,
        )
        return terms_backward([term], probs_scale, g, index, probs, h)

    @jax.custom_jvp
    def backward(values, scale, temperature, g, index, probs, h):
        dtype = probs.dtype
        inverse = largest_finite(1.0 / jnp.asarray(temperature), dtype) if tempered else -1.0
        kind = ANCHOR_KINDS["gap" if gap is not None else conditional]
        weights = (tempered_weight, sample_weight, scale, inverse, kind, gap or 0.0, probs_scale)
        weights = jnp.stack([jnp.asarray(w, dtype) for w in weights])

        def fallback(values, weights, probs, index, g, h):
            return reference(values, scale, temperature, g, index, probs, h)

        return native.combine(values, weights, probs, index, g, h, fallback)

    @backward.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(reference, primals, tangents)

    return backward


def _backward(rule_name: str, options: Options, residuals: tuple, cotangents: tuple) -> tuple:
    rule = RULES[rule_name]
    logits, noise, index, probs, temperature = residuals
    g, h = cotangents
    terms = anchor_terms(rule, options, logits, noise, index, probs, temperature)
    if rule.terms is None and native.usable_rows(probs):  # one pass of the CPU kernel
        (term,) = terms
        tempered = term.temperature is not None
        backward = _term_backward(
            term.tempered_weight,
            term.sample_weight,
            tempered,
            term.conditional,
            term.gap,
            rule.probs_scale,
        )
        term_temperature = term.temperature if tempered else 1.0
        grad = backward(term.values, term.scale, term_temperature, g, index, probs, h)
    else:
        grad = terms_backward(terms, rule.probs_scale, g, index, probs, h)
    return None, grad, None


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _estimate(
    rule_name: str, options: Options, key: Array, logits: Array, temperature: ArrayLike
) -> tuple[Array, Array]:
    return _forward(rule_name, options, key, logits, temperature)[0]


_estimate.defvjp(_forward, _backward)

_compiled = jax.jit(_estimate, static_argnums=(0, 1), inline=True)


def estimate(
    rule_name: str,
    key: Array,
    logits: Array,
    temperature: ArrayLike,
    options: Options | None = None,
) -> tuple[Array, Array]:
    """``(sample, probs)`` with the backward of ``RULES[rule_name]``; no argument checks
    (``options``: :func:`rule_options`, None for the defaults). Compiled once per rule, options
    and input shape, so eager calls are fast too; under an enclosing ``jit`` it is inlined, so
    XLA fuses it with the caller (as a nested call it did not: the jitted gradient at 64 x 32768
    took about twice as long)."""
    if options is None:
        options = RULES[rule_name].options
    return _compiled(rule_name, options, key, logits, temperature)


def _estimator(
    rule_name: str, key: Array, logits: ArrayLike, temperature: ArrayLike, **options: float
) -> tuple[Array, Array]:
    temperature = check_temperature(temperature)
    options = rule_options(rule_name, options)
    logits = jnp.asarray(logits)
    if validation_enabled():
        check_logits(logits)  # dtype and shape; values only when concrete (not under jit, vmap)
    else:
        check_event_array("logits", logits)  # dtype and shape: no data-dependent work
    return estimate(rule_name, key, logits, temperature, options)


def reinmax(key: Array, logits: ArrayLike, temperature: float = 1.0) -> tuple[Array, Array]:
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


def straight_through(
    key: Array, logits: ArrayLike, temperature: float = 1.0
) -> tuple[Array, Array]:
    r"""Straight-through: an exact one-hot draw with backward
    :math:`J(\operatorname{softmax}(\theta/\tau))\, g / \tau + J(\pi_0) h`, the gradient of
    ``sample + s - stop_gradient(s)`` with ``s = softmax(logits / temperature)``.
    Arguments and returns as :func:`reinmax`."""
    return _estimator("straight_through", key, logits, temperature)


def gumbel_straight_through(
    key: Array, logits: ArrayLike, temperature: float = 1.0
) -> tuple[Array, Array]:
    r"""Straight-through Gumbel-softmax: ``sample = onehot(argmax(logits + G))`` with Gumbel noise
    ``G`` (an exact categorical draw) and backward :math:`J(y)\, g / \tau + J(\pi_0) h` with
    :math:`y = \operatorname{softmax}((\theta + G)/\tau)`.
    Arguments and returns as :func:`reinmax`."""
    return _estimator("gumbel_straight_through", key, logits, temperature)


def gapped_straight_through(
    key: Array, logits: ArrayLike, temperature: float = 1.0, *, gap: float = 1.0
) -> tuple[Array, Array]:
    r"""Gapped straight-through, GST (Fan et al., ICML 2022): an exact one-hot draw ``D`` and the
    backward :math:`J(\operatorname{softmax}(\tilde\theta/\tau))\, g / \tau + J(\pi_0) h` at the
    shifted logits :math:`\tilde\theta` (:func:`gapped_logits`): the drawn category raised to the
    maximum, every other capped ``gap`` below it. A deterministic stand-in for ST-Gumbel's
    noise; ``gap=1.0`` is the paper's GST-1.0. Arguments and returns as :func:`reinmax`."""
    return _estimator("gapped_straight_through", key, logits, temperature, gap=gap)


def gumbel_rao(
    key: Array, logits: ArrayLike, temperature: float = 1.0, *, samples: int = 10
) -> tuple[Array, Array]:
    r"""Gumbel-Rao, GR-MCK (Paulus et al., ICLR 2021): an exact one-hot draw ``D`` and the
    ST-Gumbel backward averaged over ``samples`` draws of Gumbel noise conditional on ``D``,
    :math:`\tfrac1S \sum_s J(\operatorname{softmax}((\theta + G_s)/\tau))\, g / \tau + J(\pi_0) h`.
    Lower variance than ST-Gumbel with the same mean; no extra evaluations of the objective, a
    backward ``samples`` times as wide. Arguments and returns as :func:`reinmax`."""
    return _estimator("gumbel_rao", key, logits, temperature, samples=samples)


def reinmax_rao(
    key: Array, logits: ArrayLike, temperature: float = 1.0, *, samples: int = 10
) -> tuple[Array, Array]:
    r"""ReinMax-Rao (Wang and Bui, arXiv 2603.08257, 2026): ReinMax with its first term replaced
    by a Gumbel-Rao average at the midpoint logits :math:`\theta_D = \log((\pi_0 + D)/2)`,
    :math:`\tfrac2S \sum_s J(\operatorname{softmax}((\theta_D + G_s)/\tau))\, g / \tau
    - \tfrac12 J(\pi_0) g + J(\pi_0) h` with :math:`\arg\max(\theta_D + G_s) = D`.
    Arguments and returns as :func:`reinmax`."""
    return _estimator("reinmax_rao", key, logits, temperature, samples=samples)


def reinmax_cv(
    key: Array,
    logits: ArrayLike,
    temperature: float = 1.0,
    *,
    samples: int = 10,
    eta: float = 1.0,
    cv_temperature: float | None = None,
) -> tuple[Array, Array]:
    r"""ReinMax-CV (Wang and Bui, arXiv 2603.08257, 2026): the ReinMax backward plus the control
    variate :math:`\tfrac{\eta}{\tau_2}(\tfrac1S \sum_s J(y_s) - J(y_0))\, g`, the Gumbel-Rao
    average (``samples`` conditional draws) minus one unconditional ST-Gumbel term, both at the
    midpoint logits :math:`\theta_D = \log((\pi_0 + D)/2)` and temperature
    :math:`\tau_2` = ``cv_temperature`` (default: ``temperature``). The authors tune ``eta`` in
    0.1-2 and :math:`\tau_2` in 0.1-1.5 per task. Arguments and returns as :func:`reinmax`."""
    return _estimator(
        "reinmax_cv",
        key,
        logits,
        temperature,
        samples=samples,
        eta=eta,
        cv_temperature=cv_temperature,
    )
