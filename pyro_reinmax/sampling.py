"""Exact one-hot draws from a categorical distribution by inverse-CDF sampling.

For each row, with cumulative sums :math:`c_k = \\sum_{j \\le k} p_j` (accumulated in float64) and
one uniform :math:`u \\sim U[0, c_{K-1})`, the drawn category is the first :math:`k` with
:math:`c_k > u`. Category :math:`k` is drawn with probability
:math:`(c_k - c_{k-1}) / c_{K-1}`, so a zero-probability (masked) category is never drawn, also at
the end of the row. This is one uniform per row instead of one per logit (``torch.multinomial``,
Gumbel-max). On the CPU the sums and the search run in one pass of :mod:`pyro_reinmax.native`
when its kernels are built: the same uniforms and the same sums, so the same draws.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import native
from .validation import check_row_totals, raise_nan_rows


def draw_index(probs: Tensor, validate: bool = False) -> Tensor:
    """Draw one category per row of ``probs`` (shape ``(..., K)``); returns indices ``(..., 1)``.

    Rows need not be normalised; they must be finite, non-negative and not all zero. With
    ``validate``, a NaN row (from NaN or +inf logits, or a fully masked row) raises.
    """
    if native.usable(probs):
        uniforms = torch.rand(probs.shape[:-1] + (1,), dtype=torch.float64)
        index, nan_rows = native.draw_index(probs, uniforms)
        if validate and nan_rows:
            raise_nan_rows()
        return index
    # In place on one float64 copy (the same sums as cumsum(dtype=float64), which allocates a
    # second array of that size: on the CPU each fresh large block costs page faults).
    cdf = probs.to(torch.float64, memory_format=torch.contiguous_format, copy=True).cumsum_(-1)
    total = cdf[..., -1:]
    if validate:
        check_row_totals(total)
    u = torch.rand(total.shape, dtype=cdf.dtype, device=cdf.device) * total
    # rand() * total can round up to total; keep u strictly below it.
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    index = torch.searchsorted(cdf, u, right=True)
    # Only a NaN row (possible with validation off) could give K; keep it in range.
    return index.clamp_(max=probs.shape[-1] - 1)


def perturbed_logits_given_index(logits: Tensor, index: Tensor, exponentials: Tensor) -> Tensor:
    r"""Gumbel-perturbed logits :math:`z = \theta + G` drawn conditionally on
    :math:`\arg\max z = ` ``index``.

    With :math:`E_k` independent standard exponentials, the maximum is
    :math:`z_{k^*} = \log \sum_j e^{\theta_j} - \log E_{k^*}` and every other entry is a Gumbel
    with location :math:`\theta_j` truncated below it,
    :math:`z_j = -\log(E_j e^{-\theta_j} + e^{-z_{k^*}})` (Maddison et al., 2014). An exact
    categorical ``index`` followed by this draw has the joint law of Gumbel-max, without forming
    ``logits + G`` (which loses the draw once the logits dwarf the noise). ``-inf`` logits stay
    ``-inf``.
    """
    log_exponentials = exponentials.log()
    top = logits.logsumexp(-1, keepdim=True) - log_exponentials.gather(-1, index)
    return torch.logaddexp(log_exponentials - logits, -top).neg_().scatter_(-1, index, top)


def draw_exponentials(like: Tensor) -> Tensor:
    """Standard exponentials :math:`-\\log U` shaped and typed like ``like``, from PyTorch's
    generator (also where the CPU kernels run, so a seed gives the same noise on every path),
    finite and bounded below by the dtype's smallest normal number (so that their logarithm is
    finite). The uniforms are drawn in float32 at least (half-precision uniforms take few
    values), and ``-log U`` is several times faster on CPU than ``Tensor.exponential_``."""
    dtype = like.dtype if torch.finfo(like.dtype).bits >= 32 else torch.float32
    uniforms = torch.rand(like.shape, dtype=dtype, device=like.device)
    exponentials = uniforms.log_().neg_().to(like.dtype)
    return exponentials.clamp_(min=torch.finfo(like.dtype).tiny, max=torch.finfo(like.dtype).max)


def one_hot_at(index: Tensor, like: Tensor) -> Tensor:
    """A one-hot tensor shaped and typed like ``like``, with ones at ``index`` (``(..., 1)``)."""
    return torch.zeros_like(like, memory_format=torch.contiguous_format).scatter_(-1, index, 1.0)


def draw_one_hot(probs: Tensor) -> Tensor:
    """Exact one-hot draw from ``Categorical(probs)`` with the shape and dtype of ``probs``."""
    return one_hot_at(draw_index(probs), probs)
