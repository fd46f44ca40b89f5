r"""Each model factor linearised in its sampled discrete parents, one variable at a time (PyTorch).

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
"""

from __future__ import annotations

import torch
from pyro.distributions import Independent, MaskedDistribution
from pyro.distributions.torch_distribution import ExpandedDistribution
from torch import Tensor

from .kl import discrete_log_probs


def shifted_differences(one_hot: Tensor, index: Tensor, event_dims: int, dim: int) -> Tensor:
    r""":math:`z[d + j] - \operatorname{sg}(z[d + j])` for :math:`j = 1, \dots, K - 1` and every
    variable of a site, zero-valued, on axis ``dim`` (negative) in the order of the site's
    elements (variable-major), its batch axes aligned on the right.

    ``one_hot``: ``batch + event + (K,)``, differentiable; ``index``: the drawn categories,
    ``batch + event``; ``event_dims``: the number of event axes before the categories.
    """
    categories = one_hot.shape[-1]
    shifts = torch.arange(1, categories, device=index.device)
    shifted = one_hot.gather(-1, (index.unsqueeze(-1) + shifts) % categories)
    shifted = shifted - shifted.detach()
    batch = shifted.shape[: shifted.dim() - event_dims - 1]
    flat = shifted.reshape(batch + (-1,)).movedim(-1, 0)
    padding = (1,) * (-dim - 1 - len(batch))
    return flat.reshape(flat.shape[:1] + padding + batch)


def perturbed_index(index: Tensor, event_dims: int, shifts: Tensor, dim: int) -> Tensor:
    """The categories of a site at every element of the perturbation dimension: ``index`` moved by
    ``shifts`` (``(E, variables)``, :meth:`~reinmax_core.perturbation.SlotPlan.shifts`), with
    the elements on axis ``dim`` (negative) and the batch axes aligned on the right; values
    modulo the number of categories are left to the caller."""
    batch = index.shape[: index.dim() - event_dims]
    event = index.shape[index.dim() - event_dims :]
    moves = shifts.reshape(shifts.shape[:1] + (1,) * len(batch) + event)
    moved = index.unsqueeze(0) + moves
    padding = (1,) * (-dim - 1 - len(batch))
    return moved.reshape(moved.shape[:1] + padding + moved.shape[1:])


def linearise(log_factor: Tensor, dim: int, terms: list[tuple[Tensor, Tensor]]) -> Tensor:
    """The factor's value at element 0 of axis ``dim`` (kept as a size-1 axis) plus, for each
    parent, its :func:`shifted_differences` times the factor's change at the parent's elements
    (``terms``: ``(elements, differences)`` pairs)."""
    if log_factor.dim() < -dim or log_factor.shape[dim] == 1:
        return log_factor  # no element changes it
    base = log_factor.narrow(dim, 0, 1)
    total = base
    for elements, differences in terms:
        change = log_factor.index_select(dim, elements) - base
        change = torch.where(torch.isfinite(change), change, 0.0)
        total = total + (change * differences).sum(dim, keepdim=True)
    return total


def category_log_probs(fn) -> Tensor:
    r""":math:`\log p(k)` for every category :math:`k` of every variable of ``fn`` (a
    distribution with finite enumerable support, possibly under ``Independent``, ``Masked`` and
    ``Expanded`` wrappers): broadcastable to ``fn.batch_shape + event + (K,)``, where ``event``
    is ``fn``'s event shape without a one-hot's category axis. Masked entries are 0."""
    masks, event_dims = [], 0
    while not fn.has_enumerate_support:
        if isinstance(fn, MaskedDistribution):
            mask = torch.as_tensor(fn._mask)  # a tensor or a bool
            masks.append(mask.reshape(mask.shape + (1,) * event_dims))
        elif isinstance(fn, Independent):
            event_dims += fn.reinterpreted_batch_ndims
        elif not isinstance(fn, ExpandedDistribution):
            raise ValueError(f"{type(fn).__name__} cannot enumerate its support.")
        fn = fn.base_dist
    log_probs = discrete_log_probs(fn)
    if log_probs is None:  # any other finite support: score each of its values
        log_probs = fn.log_prob(fn.enumerate_support(expand=False)).movedim(0, -1)
    for mask in masks:
        log_probs = log_probs.masked_fill(~mask.to(log_probs.device).unsqueeze(-1), 0.0)
    return log_probs
