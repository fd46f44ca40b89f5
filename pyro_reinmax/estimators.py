r"""Single-evaluation gradient estimators for one-hot categorical samples (PyTorch).

Every estimator maps ``(logits, temperature)`` to ``(sample, probs)``: ``probs = softmax(logits)``
over the last axis and ``sample`` an exact one-hot draw from ``Categorical(probs)``. The temperature
never changes the draw; the estimators differ only in their backward pass. With
:math:`g = \partial L / \partial \text{sample}`, :math:`h = \partial L / \partial \text{probs}`,
:math:`J(p) = \operatorname{diag}(p) - p p^\top` (the Jacobian of softmax) and :math:`\tau` the
temperature:

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
  (:func:`~pyro_reinmax.sampling.perturbed_logits_given_index`): the same joint law, exact at every
  magnitude of the logits.

All three share one backward, :math:`c\, J(a) g + J(\pi_0)(h + b\, g)`, with anchor :math:`a` and
scales :math:`(c, b)` set by the forward pass. ``-inf`` logits mask categories: they are never drawn
and receive a zero (finite) gradient. The temperature receives no gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .sampling import draw_exponentials, draw_index, one_hot_at, perturbed_logits_given_index
from .validation import check_event_tensor, check_temperature, validation_enabled

__all__ = ["gumbel_straight_through", "reinmax", "straight_through"]


class Rule(NamedTuple):
    """An estimator's backward: anchor weights ``(w_y, w_D)``, whether the draw is Gumbel-max, and
    the scales ``c = anchor_scale / tau ** inverse_temperature_power`` and ``b = probs_scale``."""

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


def largest_finite(value: float, dtype: torch.dtype) -> float:
    """``value`` capped at the largest finite number of ``dtype``: a scale ``1 / tau`` for a tiny
    temperature then multiplies an exact zero into zero instead of NaN."""
    return min(value, torch.finfo(dtype).max)


def tempered_softmax(x: Tensor, temperature: float) -> Tensor:
    r""":math:`\operatorname{softmax}(x / \tau)` over the last axis, computed as
    :math:`\operatorname{softmax}((x - \max x) \cdot \min(1/\tau, \text{largest float}))`: the
    maximum maps to exactly 0, so no finite ``x`` and no ``tau > 0`` overflows to NaN (a tiny
    ``tau`` gives the one-hot limit)."""
    if temperature == 1.0:
        return x.softmax(-1)
    inverse = largest_finite(1.0 / temperature, x.dtype)
    return ((x - x.amax(-1, keepdim=True)) * inverse).softmax(-1)


def softmax_vjp(p: Tensor, v: Tensor) -> Tensor:
    r"""The softmax vector-Jacobian product :math:`J(p) v = p \odot (v - \langle p, v \rangle)`."""
    pv = p * v
    return pv - p * pv.sum(-1, keepdim=True)


class OneHotEstimatorFunction(torch.autograd.Function):
    r"""The draw and the shared backward :math:`c J(a) g + J(\pi_0)(h + b g)` of every rule.

    The anchor is :math:`a = w_y y + w_D D` with
    :math:`y = \operatorname{softmax}((\theta + G)/\tau)` (Gumbel noise :math:`G` only for
    ST-Gumbel). Expanding the products, the backward is
    :math:`c w_y (y \odot g - y\, s) + c w_D D (g_D - s) + J(\pi_0) w`, with
    :math:`s = \langle a, g \rangle` and :math:`w = h + b g`, computed in a few fused passes.
    Under ``create_graph=True`` the same quantity is computed with differentiable operations, so a
    second derivative is the derivative of the estimated gradient at the fixed draw.

    ``apply(logits, temperature, rule_name, validate)``: ``temperature`` a checked float,
    ``validate`` whether to raise on NaN probabilities (the distributions validate their parameters
    at construction).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, rule_name: str, validate: bool):
        rule = RULES[rule_name]
        probs = logits.softmax(-1)
        index = draw_index(probs, validate)
        noise = draw_exponentials(logits) if rule.gumbel else None
        ctx.set_materialize_grads(False)
        need_logits = noise is not None or temperature != 1.0
        ctx.save_for_backward(logits if need_logits else None, noise, index, probs)
        ctx.temperature = temperature
        ctx.rule = rule
        return one_hot_at(index, probs), probs

    @staticmethod
    def _tempered(ctx) -> Tensor:
        logits, noise, index, probs = ctx.saved_tensors
        if logits is None:
            return probs
        if noise is not None:
            logits = perturbed_logits_given_index(logits, index, noise)
        return tempered_softmax(logits, ctx.temperature)

    @staticmethod
    def _anchor_scale(ctx) -> float:
        scale = ctx.rule.anchor_scale / ctx.temperature**ctx.rule.inverse_temperature_power
        return largest_finite(scale, ctx.saved_tensors[3].dtype)

    @staticmethod
    def backward(ctx, grad_sample: Tensor | None, grad_probs: Tensor | None):
        if torch.is_grad_enabled():
            grad = OneHotEstimatorFunction._differentiable_backward(ctx, grad_sample, grad_probs)
        else:
            grad = OneHotEstimatorFunction._fused_backward(ctx, grad_sample, grad_probs)
        return grad, None, None, None

    @staticmethod
    def _fused_backward(ctx, g: Tensor | None, h: Tensor | None) -> Tensor | None:
        _, _, index, probs = ctx.saved_tensors
        c, b = OneHotEstimatorFunction._anchor_scale(ctx), ctx.rule.probs_scale
        w_y, w_d = ctx.rule.tempered_weight, ctx.rule.sample_weight
        if g is None:
            return None if h is None else softmax_vjp(probs, h)
        y = OneHotEstimatorFunction._tempered(ctx)
        out = g * y
        s_y = out.sum(-1, keepdim=True)
        s_a = s_y * w_y
        if w_d:
            g_d = g.gather(-1, index)
            s_a = s_a + g_d * w_d
        if y is probs and h is None:  # J(pi_0) b g shares the product g * y
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

    @staticmethod
    def _differentiable_backward(ctx, g: Tensor | None, h: Tensor | None) -> Tensor | None:
        _, _, index, probs = ctx.saved_tensors
        rule = ctx.rule
        grad = None
        w = h
        if g is not None:
            anchor = OneHotEstimatorFunction._tempered(ctx) * rule.tempered_weight
            if rule.sample_weight:
                anchor = anchor + one_hot_at(index, probs) * rule.sample_weight
            grad = softmax_vjp(anchor, g) * OneHotEstimatorFunction._anchor_scale(ctx)
            if rule.probs_scale:
                w = g * rule.probs_scale if h is None else h + g * rule.probs_scale
        if w is not None:
            through = softmax_vjp(probs, w)
            grad = through if grad is None else grad + through
        return grad


def estimate(
    rule_name: str, logits: Tensor, temperature: float, validate: bool = False
) -> tuple[Tensor, Tensor]:
    """``(sample, probs)`` with the backward of ``RULES[rule_name]``; ``temperature`` must already
    be checked."""
    return OneHotEstimatorFunction.apply(logits, temperature, rule_name, validate)


def _estimator(rule_name: str, logits: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    check_event_tensor("logits", logits)  # dtype and shape: no data-dependent work
    return estimate(rule_name, logits, check_temperature(temperature), validation_enabled())


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
