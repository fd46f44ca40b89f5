"""Arithmetic on log-probabilities whose ``-inf`` entries (masked categories) stay exact and whose
gradients stay finite.

Zero probabilities are structural zeros: their categories are never drawn and their parameters
receive a zero gradient (the limit of every estimator here, whose backward is proportional to the
probability of the category).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def safe_log(probs: Tensor) -> Tensor:
    """``log(probs)``, exactly ``-inf`` where ``probs == 0``, with a zero gradient there."""
    positive = probs > 0
    return torch.where(positive, torch.where(positive, probs, 1.0).log(), -torch.inf)


def select(one_hot: Tensor, values: Tensor) -> Tensor:
    r""":math:`\sum_k z_k v_k` over the last axis, linear in :math:`z`, with ``-inf`` entries of
    ``v`` contributing 0 where :math:`z_k = 0` and ``-inf`` where :math:`z_k > 0`.

    The gradient with respect to :math:`z_k` is :math:`v_k`, or 0 where :math:`v_k = -\infty`. This
    is the categorical log-mass :math:`\log p(z) = \sum_k z_k \log \pi_k` when ``values`` are
    log-probabilities, and the mixture likelihood :math:`\sum_k z_k \log p_k(x)` when they are
    component log-densities. Shapes broadcast (enumerated values included).
    """
    dtype = torch.result_type(one_hot, values)
    one_hot, values = one_hot.to(dtype), values.to(dtype)
    masked = torch.isneginf(values)
    total = _contract(one_hot, values.masked_fill(masked, 0.0))
    hits = _contract((one_hot != 0).to(values.dtype), masked.to(values.dtype))
    return total.masked_fill(hits > 0, -torch.inf)


def _contract(one_hot: Tensor, values: Tensor) -> Tensor:
    """``(one_hot * values).sum(-1)``, as a contraction where the one-hots broadcast against
    larger values (enumerated one-hots ``(K, 1, ..., K)`` against ``(..., N, K)`` would build a
    ``(K, ..., N, K)`` product), else as a product and sum (a batched contraction of one-hots as
    large as the product, ``(E, N, K)`` against ``(N, K)``, transposes them)."""
    shape = torch.broadcast_shapes(one_hot.shape, values.shape)
    if math.prod(shape) <= one_hot.numel():
        return (one_hot * values).sum(-1)
    return torch.einsum("...k,...k->...", one_hot, values)


def categorical_kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    r""":math:`\mathrm{KL}(p \| q) = \sum_k p_k (\log p_k - \log q_k)` from normalised
    log-probabilities.

    Terms with :math:`p_k = 0` are 0 (with zero gradient); a term with :math:`p_k > 0 = q_k` is
    :math:`+\infty`.
    """
    p_probs = p_logits.exp()
    support = p_probs > 0
    difference = torch.where(support, p_logits, 0.0) - torch.where(support, q_logits, 0.0)
    return (p_probs * difference).sum(-1)
