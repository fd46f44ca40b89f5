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
  :math:`\nabla_\theta = J(y)\, g / \tau + J(\pi_0) h`.

All three share one backward, :math:`c\, J(a) g + J(\pi_0)(h + b\, g)`, with anchor :math:`a` and
scales :math:`(c, b)` set by the forward pass. ``-inf`` logits mask categories: they are never drawn
and receive a zero (finite) gradient. The temperature receives no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from .sampling import draw_one_hot
from .validation import check_finite_probs, check_temperature, validation_enabled

__all__ = ["gumbel_straight_through", "reinmax", "straight_through"]


def softmax_vjp(p: Tensor, v: Tensor) -> Tensor:
    r"""The softmax vector-Jacobian product :math:`J(p) v = p \odot (v - \langle p, v \rangle)`."""
    pv = p * v
    return pv - p * pv.sum(-1, keepdim=True)


class OneHotEstimatorFunction(torch.autograd.Function):
    r"""Shared backward :math:`c J(a) g + J(\pi_0)(h + b g)`; subclasses implement ``forward``.

    The anchor is :math:`a = w_y \operatorname{softmax}((\theta + G)/\tau) + w_D D` (Gumbel noise
    :math:`G` only for ST-Gumbel). It is rebuilt in the backward from saved inputs and outputs with
    differentiable operations, so a second derivative (``create_graph=True``) is the derivative of
    the estimated gradient at the fixed draw.

    ``apply(logits, temperature, validate)``: ``temperature`` a checked float, ``validate`` whether
    to raise on NaN probabilities (the distributions validate their parameters at construction).
    """

    @staticmethod
    def _save(
        ctx: FunctionCtx,
        logits: Tensor,
        noise: Tensor | None,
        sample: Tensor,
        probs: Tensor,
        temperature: float,
        weights: tuple[float, float],
        scales: tuple[float, float],
    ) -> None:
        ctx.set_materialize_grads(False)
        need_logits = noise is not None or temperature != 1.0
        ctx.save_for_backward(logits if need_logits else None, noise, sample, probs)
        ctx.temperature = temperature
        ctx.tempered_weight, ctx.sample_weight = weights
        ctx.anchor_scale, ctx.probs_scale = scales

    @staticmethod
    def _anchor(ctx) -> Tensor:
        logits, noise, sample, probs = ctx.saved_tensors
        if logits is None:
            tempered = probs
        else:
            shifted = logits if noise is None else logits + noise
            tempered = (shifted / ctx.temperature).softmax(-1)
        anchor = tempered if ctx.tempered_weight == 1.0 else tempered * ctx.tempered_weight
        if ctx.sample_weight:
            anchor = anchor + sample.detach() * ctx.sample_weight
        return anchor

    @staticmethod
    def backward(ctx, grad_sample: Tensor | None, grad_probs: Tensor | None):
        probs = ctx.saved_tensors[3]
        grad = None
        through_probs = grad_probs
        if grad_sample is not None:
            anchor = OneHotEstimatorFunction._anchor(ctx)
            grad = softmax_vjp(anchor, grad_sample)
            if ctx.anchor_scale != 1.0:
                grad = grad * ctx.anchor_scale
            if ctx.probs_scale:
                scaled = grad_sample * ctx.probs_scale
                through_probs = scaled if grad_probs is None else grad_probs + scaled
        if through_probs is not None:
            through = softmax_vjp(probs, through_probs)
            grad = through if grad is None else grad + through
        return grad, None, None


def _probs(logits: Tensor, validate: bool) -> Tensor:
    probs = logits.softmax(-1)
    if validate:
        check_finite_probs(probs)
    return probs


class ReinMaxFunction(OneHotEstimatorFunction):
    """ReinMax: anchor (softmax(logits / tau) + D) / 2, scales (2, -1/2)."""

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, validate: bool):
        probs = _probs(logits, validate)
        sample = draw_one_hot(probs)
        OneHotEstimatorFunction._save(
            ctx, logits, None, sample, probs, temperature, (0.5, 0.5), (2.0, -0.5)
        )
        return sample, probs


class StraightThroughFunction(OneHotEstimatorFunction):
    """Straight-through: anchor softmax(logits / tau), scales (1 / tau, 0)."""

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, validate: bool):
        probs = _probs(logits, validate)
        sample = draw_one_hot(probs)
        OneHotEstimatorFunction._save(
            ctx, logits, None, sample, probs, temperature, (1.0, 0.0), (1.0 / temperature, 0.0)
        )
        return sample, probs


class GumbelStraightThroughFunction(OneHotEstimatorFunction):
    """ST Gumbel-softmax: sample onehot(argmax(logits + G)), anchor softmax((logits + G) / tau),
    scales (1 / tau, 0)."""

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, validate: bool):
        probs = _probs(logits, validate)
        exponential = torch.empty_like(logits, memory_format=torch.contiguous_format)
        noise = exponential.exponential_().clamp_(min=torch.finfo(logits.dtype).tiny).log_().neg_()
        index = (logits + noise).argmax(-1, keepdim=True)
        sample = torch.zeros_like(probs).scatter_(-1, index, 1.0)
        OneHotEstimatorFunction._save(
            ctx, logits, noise, sample, probs, temperature, (1.0, 0.0), (1.0 / temperature, 0.0)
        )
        return sample, probs


def reinmax(logits: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
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

    A drop-in for ``reinmax.reinmax(logits, tau)`` and ``F.gumbel_softmax(logits, hard=True)``.
    Logits are checked for NaN/+inf when torch distribution validation is on (the default).
    """
    return ReinMaxFunction.apply(logits, check_temperature(temperature), validation_enabled())


def straight_through(logits: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Straight-through: an exact one-hot draw with backward
    :math:`J(\operatorname{softmax}(\theta/\tau))\, g / \tau + J(\pi_0) h`, the gradient of
    ``sample + s - s.detach()`` with ``s = softmax(logits / temperature)``.
    Arguments and returns as :func:`reinmax`."""
    return StraightThroughFunction.apply(
        logits, check_temperature(temperature), validation_enabled()
    )


def gumbel_straight_through(logits: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Straight-through Gumbel-softmax: ``sample = onehot(argmax(logits + G))`` with Gumbel noise
    ``G`` (an exact categorical draw) and backward :math:`J(y)\, g / \tau + J(\pi_0) h` with
    :math:`y = \operatorname{softmax}((\theta + G)/\tau)`, as ``F.gumbel_softmax(hard=True)``.
    Arguments and returns as :func:`reinmax`."""
    return GumbelStraightThroughFunction.apply(
        logits, check_temperature(temperature), validation_enabled()
    )
