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

from .sampling import draw_index, one_hot_at
from .validation import check_logits, check_temperature, validation_enabled

__all__ = ["gumbel_straight_through", "reinmax", "straight_through"]


def softmax_vjp(p: Tensor, v: Tensor) -> Tensor:
    r"""The softmax vector-Jacobian product :math:`J(p) v = p \odot (v - \langle p, v \rangle)`."""
    pv = p * v
    return pv - p * pv.sum(-1, keepdim=True)


class OneHotEstimatorFunction(torch.autograd.Function):
    r"""Shared backward :math:`c J(a) g + J(\pi_0)(h + b g)`; subclasses implement ``forward``.

    The anchor is :math:`a = w_y y + w_D D` with
    :math:`y = \operatorname{softmax}((\theta + G)/\tau)` (Gumbel noise :math:`G` only for
    ST-Gumbel). Expanding the products, the backward is
    :math:`c w_y (y \odot g - y\, s) + c w_D D (g_D - s) + J(\pi_0) w`, with
    :math:`s = \langle a, g \rangle` and :math:`w = h + b g`, computed in a few fused passes.
    Under ``create_graph=True`` the same quantity is computed with differentiable operations, so a
    second derivative is the derivative of the estimated gradient at the fixed draw.

    ``apply(logits, temperature, validate)``: ``temperature`` a checked float, ``validate`` whether
    to raise on NaN probabilities (the distributions validate their parameters at construction).
    """

    @staticmethod
    def _save(
        ctx: FunctionCtx,
        logits: Tensor,
        noise: Tensor | None,
        index: Tensor,
        probs: Tensor,
        temperature: float,
        weights: tuple[float, float],
        scales: tuple[float, float],
    ) -> None:
        ctx.set_materialize_grads(False)
        need_logits = noise is not None or temperature != 1.0
        ctx.save_for_backward(logits if need_logits else None, noise, index, probs)
        ctx.temperature = temperature
        ctx.tempered_weight, ctx.sample_weight = weights
        ctx.anchor_scale, ctx.probs_scale = scales

    @staticmethod
    def _tempered(ctx) -> Tensor:
        logits, noise, _, probs = ctx.saved_tensors
        if logits is None:
            return probs
        shifted = logits if noise is None else logits + noise
        return (shifted / ctx.temperature).softmax(-1)

    @staticmethod
    def backward(ctx, grad_sample: Tensor | None, grad_probs: Tensor | None):
        if torch.is_grad_enabled():
            grad = OneHotEstimatorFunction._differentiable_backward(ctx, grad_sample, grad_probs)
        else:
            grad = OneHotEstimatorFunction._fused_backward(ctx, grad_sample, grad_probs)
        return grad, None, None

    @staticmethod
    def _fused_backward(ctx, g: Tensor | None, h: Tensor | None) -> Tensor | None:
        _, _, index, probs = ctx.saved_tensors
        c, b = ctx.anchor_scale, ctx.probs_scale
        w_y, w_d = ctx.tempered_weight, ctx.sample_weight
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
            out.mul_(c * w_y).addcmul_(y, s_a, value=-c * w_y)
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
        grad = None
        w = h
        if g is not None:
            anchor = OneHotEstimatorFunction._tempered(ctx) * ctx.tempered_weight
            if ctx.sample_weight:
                sample = one_hot_at(index, probs)
                anchor = anchor + sample * ctx.sample_weight
            grad = softmax_vjp(anchor, g) * ctx.anchor_scale
            if ctx.probs_scale:
                w = g * ctx.probs_scale if h is None else h + g * ctx.probs_scale
        if w is not None:
            through = softmax_vjp(probs, w)
            grad = through if grad is None else grad + through
        return grad


class ReinMaxFunction(OneHotEstimatorFunction):
    """ReinMax: anchor (softmax(logits / tau) + D) / 2, scales (2, -1/2)."""

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, validate: bool):
        probs = logits.softmax(-1)
        index = draw_index(probs, validate)
        OneHotEstimatorFunction._save(
            ctx, logits, None, index, probs, temperature, (0.5, 0.5), (2.0, -0.5)
        )
        return one_hot_at(index, probs), probs


class StraightThroughFunction(OneHotEstimatorFunction):
    """Straight-through: anchor softmax(logits / tau), scales (1 / tau, 0)."""

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, validate: bool):
        probs = logits.softmax(-1)
        index = draw_index(probs, validate)
        OneHotEstimatorFunction._save(
            ctx, logits, None, index, probs, temperature, (1.0, 0.0), (1.0 / temperature, 0.0)
        )
        return one_hot_at(index, probs), probs


class GumbelStraightThroughFunction(OneHotEstimatorFunction):
    """ST Gumbel-softmax: sample onehot(argmax(logits + G)), anchor softmax((logits + G) / tau),
    scales (1 / tau, 0)."""

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, validate: bool):
        if validate:
            check_logits(logits)
        probs = logits.softmax(-1)
        exponential = torch.empty_like(logits, memory_format=torch.contiguous_format)
        noise = exponential.exponential_().clamp_(min=torch.finfo(logits.dtype).tiny).log_().neg_()
        index = (logits + noise).argmax(-1, keepdim=True)
        OneHotEstimatorFunction._save(
            ctx, logits, noise, index, probs, temperature, (1.0, 0.0), (1.0 / temperature, 0.0)
        )
        return one_hot_at(index, probs), probs


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
