r"""Each model factor linearised in its sampled discrete parents, one variable at a time (PyTorch).

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
:func:`~pyro_reinmax.masking.select`.
"""

from __future__ import annotations

import torch
from pyro.distributions import Independent, MaskedDistribution
from pyro.distributions.torch_distribution import ExpandedDistribution
from torch import Tensor

from .kl import discrete_log_probs


def on_elements(per_category: Tensor, event_dims: int, dim: int) -> Tensor:
    """A site's ``batch + event + (K,)`` tensor with its variables' categories moved to axis
    ``dim`` (negative), variable-major as the site's elements, batch axes aligned on the right."""
    batch = per_category.shape[: per_category.dim() - event_dims - 1]
    flat = per_category.reshape(batch + (-1,)).movedim(-1, 0)
    padding = (1,) * (-dim - 1 - len(batch))
    return flat.reshape(flat.shape[:1] + padding + batch)


def site_values(index: Tensor, event_dims: int, settings: Tensor, dim: int, covers: bool) -> Tensor:
    """A site's categories at every element of the perturbation dimension (axis ``dim``):
    ``settings`` (``(E, variables)``, :meth:`~reinmax_core.perturbation.SlotPlan.settings`)
    where it sets them, the drawn ``index`` elsewhere. With ``covers`` (every element sets every
    variable) the values do not depend on the draw: their batch axes are left at size 1, so
    the model broadcasts them as it would enumerated values."""
    batch = index.shape[: index.dim() - event_dims]
    event = index.shape[index.dim() - event_dims :]
    padding = (1,) * (-dim - 1 - len(batch))
    settings = settings.reshape(settings.shape[:1] + padding + (1,) * len(batch) + event)
    if covers:
        return settings
    return torch.where(settings >= 0, settings, index)


def linearise(
    log_factor: Tensor, dim: int, base: tuple[Tensor, Tensor], terms: list[tuple[Tensor, Tensor]]
) -> Tensor:
    """The linearised factor, with the perturbation dimension ``dim`` kept as a size-1 axis.

    Args:
        log_factor: the factor at every element (axis ``dim``).
        base: ``(elements, drawn)`` of one parent variable: its elements and its drawn one-hot
            on axis ``dim`` (:func:`on_elements`); the factor at the sample is read there.
        terms: ``(elements, differences)`` of every parent: its elements and its one-hot draw
            minus the same, detached, on axis ``dim``.
    """
    elements, drawn = base
    at_base = log_factor.index_select(dim, elements)
    total = torch.where(drawn, at_base, 0.0).sum(dim, keepdim=True)
    for elements, differences in terms:
        settings = log_factor.index_select(dim, elements)
        settings = torch.where(torch.isinf(settings), 0.0, settings)  # NaN passes
        total = total + (settings * differences).sum(dim, keepdim=True)
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
