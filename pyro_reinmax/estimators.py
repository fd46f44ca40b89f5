r"""Single-evaluation gradient estimators for one-hot categorical samples (PyTorch).

Every estimator maps ``(logits, temperature)`` to ``(sample, probs)``: ``probs = softmax(logits)``
over the last axis and ``sample`` an exact one-hot draw from ``Categorical(probs)``; the
estimators differ only in their backward pass, a ``torch.autograd.Function`` (or, on the CPU with
the kernels on, the C++ operator of :mod:`pyro_reinmax.native`). The rules and their formulas
(ReinMax, straight-through, ST-Gumbel, GST, Gumbel-Rao, ReinMax-Rao, ReinMax-CV) are
:mod:`reinmax_core.rules`'; this module computes their anchors and Jacobian-vector products on
tensors. ``-inf`` logits mask categories: they are never drawn and receive a zero (finite)
gradient. The temperature receives no gradient.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from reinmax_core.rules import PERTURBATIONS, RULES, Options, Rule
from reinmax_core.rules import rule_options as core_rule_options

from . import native
from .sampling import draw_exponentials, draw_index, one_hot_at
from .validation import check_event_tensor, check_temperature, validation_enabled

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
    (:func:`conditional_gumbel_anchors`). With ``gap`` they are logits shifted by GST's gap
    (:func:`gapped_logits`) before the softmax. The CPU kernels compute the anchors in the same
    pass."""

    values: Tensor
    tempered_weight: float
    sample_weight: float
    scale: float
    temperature: float | None = None
    conditional: str | None = None
    gap: float | None = None


def largest_finite(value: float, dtype: torch.dtype) -> float:
    """``value`` capped at the largest finite number of ``dtype``: a scale ``1 / tau`` for a tiny
    temperature then multiplies an exact zero into zero instead of NaN."""
    return min(value, torch.finfo(dtype).max)


def tempered_softmax(x: Tensor, temperature: float) -> Tensor:
    r""":math:`\operatorname{softmax}(x / \tau)` over the last axis, computed as
    :math:`\operatorname{softmax}((x - \max x) \cdot \min(1/\tau, \text{largest float}))`: the
    maximum maps to exactly 0, so no finite ``x`` and no ``tau > 0`` overflows to NaN (a tiny
    ``tau`` gives the one-hot limit). For ``tau >= 1`` the shift is left to softmax (one pass
    fewer)."""
    if temperature == 1.0:
        return x.softmax(-1)
    inverse = largest_finite(1.0 / temperature, x.dtype)
    if inverse <= 1.0:  # x / tau cannot overflow, and softmax subtracts its own maximum
        return (x * inverse).softmax(-1)
    return ((x - x.amax(-1, keepdim=True)) * inverse).softmax(-1)


def softmax_vjp(p: Tensor, v: Tensor) -> Tensor:
    r"""The softmax vector-Jacobian product :math:`J(p) v = p \odot (v - \langle p, v \rangle)`."""
    pv = p * v
    return pv - p * pv.sum(-1, keepdim=True)


def gapped_logits(logits: Tensor, index: Tensor, gap: float) -> Tensor:
    r"""GST's shifted logits: :math:`\max\theta` at the drawn category and
    :math:`\min(\theta_j, \max\theta - \kappa)` elsewhere, so the drawn category leads every
    other by at least the gap :math:`\kappa`; ``-inf`` stays ``-inf``."""
    top = logits.amax(-1, keepdim=True)
    return torch.minimum(logits, top - gap).scatter(-1, index, top)


def masked_log(x: Tensor) -> Tensor:
    r""":math:`\log x` for :math:`x \ge 0`, with :math:`\log 0 = -\infty` taken off the
    derivative's path (through ``log`` at 0 a second derivative would be NaN: a masked category
    under ``create_graph=True``)."""
    positive = x > 0
    return torch.where(positive, x, 1.0).log().masked_fill(~positive, -math.inf)


def midpoint_probs(probs: Tensor, index: Tensor) -> Tensor:
    r"""ReinMax's midpoint :math:`(\pi_0 + D)/2`, the probabilities at
    :math:`\theta_D = \log((\pi_0 + D)/2)` (a masked category stays at 0)."""
    return probs.scatter_add(-1, index, torch.ones_like(index, dtype=probs.dtype)).mul_(0.5)


def conditional_gumbel_anchors(
    base: Tensor, index: Tensor, exponentials: Tensor, temperature: float | None
) -> Tensor:
    r""":math:`y_s = \operatorname{softmax}((\log b + G_s)/\tau)` for Gumbel noise :math:`G_s`
    drawn conditionally on :math:`\arg\max(\log b + G_s) =` ``index``, one row per leading set
    ``s`` of ``exponentials`` (shape ``(S, ..., K)``); ``temperature`` None for 1.

    With :math:`E` the exponentials of :func:`~pyro_reinmax.sampling.perturbed_logits_given_index`,
    :math:`e^{\log b_j + G_j} \propto w_j = b_j / (E_j + b_j E_D)` off the drawn category and
    :math:`w_D = 1 / E_D`, so :math:`y_s` is :math:`w^{1/\tau}` normalised: no logarithm at
    :math:`\tau = 1`, exact at any magnitude of the logits (only probabilities enter)."""
    sets = exponentials.shape[:1]
    index = index.expand(sets + index.shape)
    e_top = exponentials.gather(-1, index)
    weights = (base / (exponentials + base * e_top)).scatter_(-1, index, e_top.reciprocal())
    if temperature is None:
        return weights / weights.sum(-1, keepdim=True)
    return tempered_softmax(masked_log(weights), temperature)


def conditional_gumbel_term(
    at: str, exponentials: Tensor, temperature: float, scale: float
) -> AnchorTerm:
    r"""The term :math:`c \sum_s J(y_s)\, g` over :func:`conditional_gumbel_anchors` at
    :math:`\pi_0` (``at="probs"``) or at the midpoint :math:`(\pi_0 + D)/2`."""
    temperature = None if temperature == 1.0 else temperature
    return AnchorTerm(exponentials, 1.0, 0.0, scale, temperature, at)


def _anchors(term: AnchorTerm, probs: Tensor, index: Tensor) -> Tensor:
    """The term's anchors :math:`y_s`, shape ``(S, ..., K)``."""
    if term.conditional is not None:
        base = probs if term.conditional == "probs" else midpoint_probs(probs, index)
        return conditional_gumbel_anchors(base, index, term.values, term.temperature)
    if term.temperature is None:
        return term.values
    if term.gap is not None:
        at = index.expand(term.values.shape[:-1] + (1,))
        return tempered_softmax(gapped_logits(term.values, at, term.gap), term.temperature)
    return tempered_softmax(term.values, term.temperature)


def anchor_terms_vjp(terms: list[AnchorTerm], g: Tensor, index: Tensor, probs: Tensor) -> Tensor:
    r""":math:`\sum_i c_i \sum_s J(w_{y,i} y_{i,s} + w_{D,i} D)\, g` in differentiable
    operations."""
    total = None
    for term in terms:
        anchors = _anchors(term, probs, index)
        anchor = anchors if term.tempered_weight == 1.0 else anchors * term.tempered_weight
        if term.sample_weight:
            anchor = anchor + one_hot_at(index, g) * term.sample_weight
        # J(a) g before the scale: a huge scale (tiny temperature) then multiplies exact zeros
        contribution = softmax_vjp(anchor, g).sum(0) * term.scale
        total = contribution if total is None else total + contribution
    return total


def reinmax_cv_terms(logits, index, probs, noise, temperature, options) -> list[AnchorTerm]:
    r"""ReinMax's :math:`2 J(\pi_1) g` plus
    :math:`\tfrac{\eta}{\tau_2}(\tfrac1S \sum_s J(y_s) - J(y_0))\, g` at :math:`\theta_D`:
    ``noise[0]`` gives the unconditional Gumbel :math:`G_0 = -\log E_0`, the rest the
    conditional draws."""
    options = dict(options)
    eta, cv_temperature = options["eta"], options["cv_temperature"] or temperature
    if temperature == 1.0:
        reinmax_term = AnchorTerm(probs.unsqueeze(0), 0.5, 0.5, 2.0)
    else:
        reinmax_term = AnchorTerm(logits.unsqueeze(0), 0.5, 0.5, 2.0, temperature)
    midpoint = midpoint_probs(probs, index)
    scale = largest_finite(eta / cv_temperature, probs.dtype)
    conditional = conditional_gumbel_term(
        "midpoint", noise[1:], cv_temperature, scale / (len(noise) - 1)
    )
    unconditional = (masked_log(midpoint) - noise[0].log()).unsqueeze(0)
    return [
        reinmax_term,
        conditional,
        AnchorTerm(unconditional, 1.0, 0.0, -scale, cv_temperature),
    ]


MULTI_TERM_RULES = {"reinmax_cv": reinmax_cv_terms}
"""The anchor terms of each rule whose ``Rule.terms`` names them."""


def rule_options(rule_name: str, options: dict | None = None) -> Options:
    """:func:`reinmax_core.rules.rule_options` with this backend's temperature check."""
    return core_rule_options(rule_name, options, check_temperature)


def anchor_weights(
    rule: Rule, temperature: float, options: Options, dtype: torch.dtype
) -> AnchorTerm:
    r"""A single-anchor rule's :class:`AnchorTerm` without its values (None): the weights
    :math:`(w_y, w_D)`, the scale :math:`c`, split over the Gumbel rule's :math:`S` draws, the
    temperature of the anchor's softmax (None: the values are the anchor), where the Gumbel
    noise is drawn conditionally, and GST's gap. Depends on no tensor, so a compiled forward
    pass can take it."""
    power = rule.inverse_temperature_power
    scale = largest_finite(rule.anchor_scale / temperature**power, dtype)
    if rule.perturbation == "gumbel":
        tempered = None if temperature == 1.0 else temperature
        weights = (scale / rule.noise_count(options), tempered, rule.gumbel_at)
    else:
        tempered = rule.perturbation is not None or temperature != 1.0
        weights = (scale, temperature if tempered else None, None)
    gap = dict(options)["gap"] if rule.perturbation == "gap" else None
    return AnchorTerm(None, rule.tempered_weight, rule.sample_weight, *weights, gap=gap)


def anchor_terms(
    rule: Rule, options, logits: Tensor | None, noise: Tensor | None, index, probs, temperature
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
        values = (probs if weights.temperature is None else logits).unsqueeze(0)
    return [weights._replace(values=values)]


def differentiable_backward(
    rule: Rule, options, temperature: float, saved: tuple, g: Tensor | None, h: Tensor | None
) -> Tensor | None:
    """The backward in differentiable operations, from the forward pass's ``saved`` tensors
    ``(logits, noise, index, probs)``: under ``create_graph=True`` (a second derivative is that
    of the estimate at the fixed draw and noise), for ReinMax-CV's terms and for several sets of
    Gumbel noise."""
    logits, noise, index, probs = saved
    grad = None
    w = h
    if g is not None:
        terms = anchor_terms(rule, options, logits, noise, index, probs, temperature)
        grad = anchor_terms_vjp(terms, g, index, probs)
        if rule.probs_scale:
            w = g * rule.probs_scale if h is None else h + g * rule.probs_scale
    if w is not None:
        through = softmax_vjp(probs, w)
        grad = through if grad is None else grad + through
    return grad


class OneHotEstimatorFunction(torch.autograd.Function):
    r"""The draw and the shared backward :math:`c J(a) g + J(\pi_0)(h + b g)` of every rule.

    The anchor is :math:`a = w_y y + w_D D` with
    :math:`y = \operatorname{softmax}(\tilde\theta/\tau)`, :math:`\tilde\theta` the logits
    perturbed by the rule (conditional Gumbel noise, averaged over its draws, or the gap of GST);
    ReinMax-CV's own terms replace :math:`c J(a) g`. Expanding the products, the backward is
    :math:`c w_y (y \odot g - y\, s) + c w_D D (g_D - s) + J(\pi_0) w`, with
    :math:`s = \langle a, g \rangle` and :math:`w = h + b g`, computed in a few fused passes.
    Under ``create_graph=True`` the same quantity is computed with differentiable operations, so a
    second derivative is the derivative of the estimated gradient at the fixed draw.

    ``apply(logits, temperature, rule_name, validate, options)``: ``temperature`` a checked float,
    ``validate`` whether to raise on NaN probabilities (the distributions validate their parameters
    at construction), ``options`` the rule's checked options (:func:`rule_options`).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, rule_name: str, validate: bool, options):
        rule = RULES[rule_name]
        probs = logits.softmax(-1)
        index = draw_index(probs, validate)
        sets = rule.noise_count(options)
        noise = draw_exponentials(logits.expand((sets,) + logits.shape)) if sets else None
        ctx.set_materialize_grads(False)
        need_logits = (
            rule.terms is not None
            or rule.perturbation == "gap"
            or (rule.perturbation is None and temperature != 1.0)
        )
        ctx.save_for_backward(logits if need_logits else None, noise, index, probs)
        ctx.temperature = temperature
        ctx.rule = rule
        ctx.options = options
        return one_hot_at(index, probs), probs

    @staticmethod
    def backward(ctx, grad_sample: Tensor | None, grad_probs: Tensor | None):
        saved = ctx.saved_tensors
        logits, noise, index, probs = saved
        rule, options, temperature = ctx.rule, ctx.options, ctx.temperature
        if torch.is_grad_enabled():
            grad = differentiable_backward(
                rule, options, temperature, saved, grad_sample, grad_probs
            )
        elif grad_sample is not None and native.usable(probs):  # the CPU kernel
            terms = anchor_terms(rule, options, logits, noise, index, probs, temperature)
            grad = native.combine(terms, probs, index, grad_sample, grad_probs, rule.probs_scale)
        elif rule.terms is not None or (noise is not None and len(noise) > 1):
            grad = differentiable_backward(
                rule, options, temperature, saved, grad_sample, grad_probs
            )
        else:
            grad = OneHotEstimatorFunction._fused_backward(ctx, saved, grad_sample, grad_probs)
        return grad, None, None, None, None

    @staticmethod
    def _fused_backward(ctx, saved: tuple, g: Tensor | None, h: Tensor | None) -> Tensor | None:
        """The backward of a rule with one anchor in a few fused passes."""
        _, _, index, probs = saved
        if g is None:
            return None if h is None else softmax_vjp(probs, h)
        (term,) = anchor_terms(ctx.rule, ctx.options, *saved, ctx.temperature)
        c, b = term.scale, ctx.rule.probs_scale
        w_y, w_d = term.tempered_weight, term.sample_weight
        at_probs = term.temperature is None and term.conditional is None
        y = probs if at_probs else _anchors(term, probs, index)[0]
        out = g * y
        s_y = out.sum(-1, keepdim=True)
        s_a = s_y * w_y
        if w_d:
            g_d = g.gather(-1, index)
            s_a = s_a + g_d * w_d
        if at_probs and h is None:  # J(pi_0) b g shares the product g * y
            out.mul_(c * w_y + b).addcmul_(probs, s_a * (c * w_y) + s_y * b, value=-1.0)
        else:
            # J(y) g before the scale: a huge c (tiny temperature) then multiplies exact zeros
            out.addcmul_(y, s_a, value=-1.0).mul_(c * w_y)
            if h is None and b:  # J(pi_0) b g
                pg = probs * g
                out.add_(pg, alpha=b).addcmul_(probs, pg.sum(-1, keepdim=True), value=-b)
            elif h is not None:  # J(pi_0) (h + b g)
                pw = probs * (h if not b else h + g * b)
                out.add_(pw).addcmul_(probs, pw.sum(-1, keepdim=True), value=-1.0)
        if w_d:
            out.scatter_add_(-1, index, (g_d - s_a) * (c * w_d))
        return out


def estimate(
    rule_name: str,
    logits: Tensor,
    temperature: float,
    validate: bool = False,
    options: Options | None = None,
) -> tuple[Tensor, Tensor]:
    """``(sample, probs)`` with the backward of ``RULES[rule_name]``; ``temperature`` and
    ``options`` (:func:`rule_options`; None: the defaults) must already be checked. Where the
    CPU kernels take the logits, a single-anchor rule runs as one C++ operator
    (:mod:`pyro_reinmax.native`), else as :class:`OneHotEstimatorFunction`."""
    if options is None:
        options = RULES[rule_name].options
    if RULES[rule_name].terms is None and native.operator_usable(logits):
        recipe, option_values = operator_arguments(rule_name, temperature, options, logits.dtype)
        return native.estimate(logits, recipe, rule_name, option_values, validate)
    return OneHotEstimatorFunction.apply(logits, temperature, rule_name, validate, options)


@functools.lru_cache(maxsize=1024)
def operator_arguments(
    rule_name: str, temperature: float, options: Options, dtype: torch.dtype
) -> tuple[list[float], list[float]]:
    """A single-anchor rule's recipe for the estimator operator (``torch_estimator.cc``): the
    temperature, the perturbation, the sets of exponentials, the anchor term's kernel weights
    :math:`(w_y, w_D, c, 1/\tau \text{ or } -1, \text{kind}, \text{gap})`
    (:func:`~pyro_reinmax.native.kernel_weights`) and :math:`b`; and the option values (for its
    ``create_graph`` backward)."""
    rule = RULES[rule_name]
    term = native.kernel_weights(anchor_weights(rule, temperature, options, dtype), dtype)
    recipe = [temperature, PERTURBATIONS[rule.perturbation], rule.noise_count(options)]
    recipe += [*term, rule.probs_scale]
    return [float(value) for value in recipe], [float(value) for _, value in options]


def differentiable_backward_operator(
    logits: Tensor | None,
    noise: Tensor | None,
    index: Tensor,
    probs: Tensor,
    g: Tensor | None,
    h: Tensor | None,
    rule_name: str,
    temperature: float,
    option_values: list[float],
) -> Tensor:
    """The estimator operator's backward under ``create_graph=True``
    (:func:`differentiable_backward`), for the operator's C++ half."""
    rule = RULES[rule_name]
    options = tuple(
        (name, int(value) if name == "samples" else value)
        for (name, _), value in zip(rule.options, option_values, strict=True)
    )
    return differentiable_backward(rule, options, temperature, (logits, noise, index, probs), g, h)


native.register_differentiable_backward(differentiable_backward_operator)


def _estimator(
    rule_name: str, logits: Tensor, temperature: float, **options
) -> tuple[Tensor, Tensor]:
    check_event_tensor("logits", logits)  # dtype and shape: no data-dependent work
    checked = rule_options(rule_name, options)
    return estimate(
        rule_name, logits, check_temperature(temperature), validation_enabled(), checked
    )


def reinmax(
    logits: Tensor, temperature: float = 1.0, *, tau: float | None = None
) -> tuple[Tensor, Tensor]:
    r"""ReinMax: an exact one-hot draw with a second-order accurate backward.

    Args:
        logits: unnormalised log-probabilities, shape ``(..., K)``; ``-inf`` masks a category.
        temperature: :math:`\tau > 0` of the backward's :math:`\operatorname{softmax}(\theta/\tau)`.
            At :math:`\tau = 1` the expected gradient is exact for any quadratic objective.

    Returns:
        ``(sample, probs)``: a one-hot draw ``D`` from ``Categorical(softmax(logits))`` and
        :math:`\pi_0 = \operatorname{softmax}(\theta)`. Backward:
        :math:`2 J(\pi_1) g - \tfrac12 J(\pi_0) g + J(\pi_0) h` with
        :math:`\pi_1 = (\operatorname{softmax}(\theta/\tau) + D)/2`.

    A drop-in for the reference package's ``reinmax.reinmax(logits, tau)`` (``tau`` positional or
    keyword; its ``hard`` argument, which it ignores, is not accepted) and for
    ``F.gumbel_softmax(logits, hard=True)`` where the soft output is not used: the same one-hot
    sample in the forward pass, the ReinMax gradient in the backward pass. Logits must be a
    floating tensor with a last axis of at least one category; they are checked for NaN/+inf when
    torch distribution validation is on (the default).
    """
    if tau is not None:
        if temperature != 1.0:
            raise TypeError("reinmax() got both temperature and tau; pass one of them.")
        temperature = tau
    return _estimator("reinmax", logits, temperature)


def straight_through(logits: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Straight-through: an exact one-hot draw with backward
    :math:`J(\operatorname{softmax}(\theta/\tau))\, g / \tau + J(\pi_0) h`, the gradient of
    ``sample + s - s.detach()`` with ``s = softmax(logits / temperature)``.
    Arguments and returns as :func:`reinmax`."""
    return _estimator("straight_through", logits, temperature)


def gumbel_straight_through(logits: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Straight-through Gumbel-softmax: ``sample = onehot(argmax(logits + G))`` with Gumbel noise
    ``G`` (an exact categorical draw) and backward :math:`J(y)\, g / \tau + J(\pi_0) h` with
    :math:`y = \operatorname{softmax}((\theta + G)/\tau)`, as ``F.gumbel_softmax(hard=True)``.
    Arguments and returns as :func:`reinmax`."""
    return _estimator("gumbel_straight_through", logits, temperature)


def gapped_straight_through(
    logits: Tensor, temperature: float = 1.0, *, gap: float = 1.0
) -> tuple[Tensor, Tensor]:
    r"""Gapped straight-through, GST (Fan et al., ICML 2022): an exact one-hot draw ``D`` and the
    backward :math:`J(\operatorname{softmax}(\tilde\theta/\tau))\, g / \tau + J(\pi_0) h` at the
    shifted logits :math:`\tilde\theta` (:func:`gapped_logits`): the drawn category raised to the
    maximum, every other capped ``gap`` below it. A deterministic stand-in for ST-Gumbel's
    noise; ``gap=1.0`` is the paper's GST-1.0. Arguments and returns as :func:`reinmax`."""
    return _estimator("gapped_straight_through", logits, temperature, gap=gap)


def gumbel_rao(
    logits: Tensor, temperature: float = 1.0, *, samples: int = 10
) -> tuple[Tensor, Tensor]:
    r"""Gumbel-Rao, GR-MCK (Paulus et al., ICLR 2021): an exact one-hot draw ``D`` and the
    ST-Gumbel backward averaged over ``samples`` draws of Gumbel noise conditional on ``D``,
    :math:`\tfrac1S \sum_s J(\operatorname{softmax}((\theta + G_s)/\tau))\, g / \tau + J(\pi_0) h`.
    Lower variance than ST-Gumbel with the same mean; no extra evaluations of the objective, a
    backward ``samples`` times as wide. Arguments and returns as :func:`reinmax`."""
    return _estimator("gumbel_rao", logits, temperature, samples=samples)


def reinmax_rao(
    logits: Tensor, temperature: float = 1.0, *, samples: int = 10
) -> tuple[Tensor, Tensor]:
    r"""ReinMax-Rao (Wang and Bui, arXiv 2603.08257, 2026): ReinMax with its first term replaced
    by a Gumbel-Rao average at the midpoint logits :math:`\theta_D = \log((\pi_0 + D)/2)`,
    :math:`\tfrac2S \sum_s J(\operatorname{softmax}((\theta_D + G_s)/\tau))\, g / \tau
    - \tfrac12 J(\pi_0) g + J(\pi_0) h` with :math:`\arg\max(\theta_D + G_s) = D`.
    Arguments and returns as :func:`reinmax`."""
    return _estimator("reinmax_rao", logits, temperature, samples=samples)


def reinmax_cv(
    logits: Tensor,
    temperature: float = 1.0,
    *,
    samples: int = 10,
    eta: float = 1.0,
    cv_temperature: float | None = None,
) -> tuple[Tensor, Tensor]:
    r"""ReinMax-CV (Wang and Bui, arXiv 2603.08257, 2026): the ReinMax backward plus the control
    variate :math:`\tfrac{\eta}{\tau_2}(\tfrac1S \sum_s J(y_s) - J(y_0))\, g`, the Gumbel-Rao
    average (``samples`` conditional draws) minus one unconditional ST-Gumbel term, both at the
    midpoint logits :math:`\theta_D = \log((\pi_0 + D)/2)` and temperature
    :math:`\tau_2` = ``cv_temperature`` (default: ``temperature``). The authors tune ``eta`` in
    0.1-2 and :math:`\tau_2` in 0.1-1.5 per task. Arguments and returns as :func:`reinmax`."""
    return _estimator(
        "reinmax_cv",
        logits,
        temperature,
        samples=samples,
        eta=eta,
        cv_temperature=cv_temperature,
    )
