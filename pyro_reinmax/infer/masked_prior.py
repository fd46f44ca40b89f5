r"""A latent site's prior under the model's mask, for the mean-field ELBO (Pyro).

Under ``poutine.mask`` (or ``dist.mask``) on a latent site, the ELBO's term for the site is
:math:`E_q[m_q \log q(z) - m_p \log p(z)]` with the model's mask :math:`m_p` and the guide's
:math:`m_q`. Pyro's ``TraceMeanField_ELBO`` scores it as :math:`m_q\,\mathrm{KL}(q \| p)`: the
model's mask is lost, so masked prior factors still count. In closed form the term is

.. math:: m_p\, \mathrm{KL}(q \| p) + (m_p - m_q)\, H(q),

where masked-out entries of the KL are never evaluated into the result (a degenerate masked prior
stays finite, with finite gradients). :class:`MaskedPrior` carries both masks to the KL registered
below; where the KL or the entropy has no closed form, the ELBO falls back to its Monte Carlo
term, which is masked correctly.
"""

from __future__ import annotations

from typing import Any

import torch
from pyro.distributions import Delta, MaskedDistribution, TorchDistribution
from pyro.distributions.util import scale_and_mask
from torch import Tensor
from torch.distributions import Distribution, constraints, kl_divergence, register_kl

from ..kl import discrete_log_probs
from ..masking import categorical_kl

__all__ = ["MaskedPrior", "combine_masks", "kl_to_masked_prior"]


def combine_masks(*masks: Any) -> Tensor | bool | None:
    """The conjunction of masks (``None``/``True`` mean unmasked); ``None`` if all are unmasked."""
    combined = None
    for mask in masks:
        if mask is None or mask is True:
            continue
        combined = mask if combined is None else combined & mask
    return combined


def _weight(mask: Tensor | bool | None, like: Tensor) -> Tensor:
    if mask is None:
        return torch.ones((), dtype=like.dtype, device=like.device)
    return torch.as_tensor(mask, device=like.device).to(like.dtype)


class MaskedPrior(TorchDistribution):
    r"""``base`` with the model's mask :math:`m_p` (and the guide's :math:`m_q`) kept for
    :math:`\mathrm{KL}(q \,\|\, \cdot) = m_p \mathrm{KL}(q \| p) + (m_p - m_q) H(q)`;
    ``log_prob`` is :math:`m_p \log p`.

    Args:
        base: the model site's distribution, unmasked.
        model_mask: the model's mask (bool tensor broadcastable to the batch shape, or a bool).
        guide_mask: the guide site's mask, or ``None``.
    """

    arg_constraints: dict = {}

    def __init__(
        self,
        base: Distribution,
        model_mask: Tensor | bool | None,
        guide_mask: Tensor | bool | None = None,
    ) -> None:
        self.base = base
        self.model_mask = model_mask
        self.guide_mask = guide_mask
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        return self.base.support

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return self.base.sample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        return scale_and_mask(self.base.log_prob(value), mask=self.model_mask)


def kl_to_masked_prior(q: Distribution, prior: MaskedPrior) -> Tensor:
    """The site's mean-field term :math:`m_p \\mathrm{KL}(q \\| p) + (m_p - m_q) H(q)`
    (:math:`m_q \\log q(v) - m_p \\log p(v)` for a ``Delta`` guide at ``v``); raises
    ``NotImplementedError`` (the ELBO then uses its Monte Carlo term) where a part has no closed
    form."""
    guide_mask = prior.guide_mask
    if isinstance(q, MaskedDistribution):
        guide_mask = combine_masks(guide_mask, q._mask)
        q = q.base_dist
    model_mask = prior.model_mask
    if isinstance(q, Delta):
        log_density = q.log_density
        return _weight(guide_mask, log_density) * log_density - prior.log_prob(q.v)
    q_table, p_table = discrete_log_probs(q), discrete_log_probs(prior.base)
    if q_table is not None and p_table is not None:
        keep = torch.as_tensor(model_mask, device=p_table.device).unsqueeze(-1)
        # masked-out rows against q itself: a zero KL there, finite even for a degenerate prior
        kl = categorical_kl(q_table, torch.where(keep, p_table, q_table.detach()))
        negative_entropy = categorical_kl(q_table, torch.zeros_like(q_table))
    else:
        kl = kl_divergence(q, prior.base)
        negative_entropy = -q.entropy()
    p_weight, q_weight = _weight(model_mask, kl), _weight(guide_mask, kl)
    return torch.where(p_weight > 0, kl, 0.0) - (p_weight - q_weight) * negative_entropy


# Explicit pairs: (Delta, Distribution) and the like are registered by Pyro and would be ambiguous.
for _guide_type in (Distribution, Delta, MaskedDistribution):
    register_kl(_guide_type, MaskedPrior)(kl_to_masked_prior)
