r"""A latent site's prior under the model's mask, for the mean-field ELBO (NumPyro).

Under ``handlers.mask`` (or ``dist.mask``) on a latent site, the ELBO's term for the site is
:math:`E_q[m_q \log q(z) - m_p \log p(z)]` with the model's mask :math:`m_p` and the guide's
:math:`m_q`. NumPyro's ``TraceMeanField_ELBO`` scores a masked guide against a masked prior as
:math:`m_q m_p\,\mathrm{KL}(q \| p)`, which drops the guide's entropy where only the model is
masked. In closed form the term is

.. math:: m_p\, \mathrm{KL}(q \| p) + (m_p - m_q)\, H(q),

where masked-out entries of the KL are never evaluated into the result (a degenerate masked prior
stays finite, with finite gradients). :class:`MaskedPrior` carries the model's mask to the KL
registered below; where the KL or the entropy has no closed form, the ELBO falls back to its Monte
Carlo term, which is masked correctly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike, DTypeLike
from numpyro.distributions import (
    Delta,
    Distribution,
    ExpandedDistribution,
    MaskedDistribution,
    constraints,
)
from numpyro.distributions.kl import kl_divergence
from numpyro.distributions.util import scale_and_mask

from ..kl import discrete_log_probs
from ..masking import categorical_kl

__all__ = ["MaskedPrior", "combine_masks"]


def combine_masks(*masks: Any) -> Array | bool | None:
    """The conjunction of masks (``None``/``True`` mean unmasked); ``None`` if all are unmasked."""
    combined = None
    for mask in masks:
        if mask is None or mask is True:
            continue
        combined = mask if combined is None else jnp.logical_and(combined, mask)
    return combined


def _weight(mask: ArrayLike | bool | None, dtype: DTypeLike) -> Array:
    return jnp.ones((), dtype) if mask is None else jnp.asarray(mask).astype(dtype)


class MaskedPrior(Distribution):
    r"""``base`` with the model's mask :math:`m_p` kept for
    :math:`\mathrm{KL}(q \,\|\, \cdot) = m_p \mathrm{KL}(q \| p) + (m_p - m_q) H(q)`, with
    :math:`m_q` the guide's own mask (its ``MaskedDistribution``); ``log_prob`` is
    :math:`m_p \log p`.

    Args:
        base: the model site's distribution, unmasked.
        model_mask: the model's mask (bool array broadcastable to the batch shape, or a bool).
    """

    arg_constraints: dict = {}
    pytree_data_fields = ("base", "model_mask")

    def __init__(self, base: Distribution, model_mask: ArrayLike | bool | None) -> None:
        self.base = base
        self.model_mask = model_mask
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return self.base.support

    @property
    def has_enumerate_support(self) -> bool:
        return self.base.has_enumerate_support

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        return self.base.sample(key, sample_shape)

    def log_prob(self, value: ArrayLike) -> Array:
        return scale_and_mask(self.base.log_prob(value), mask=self.model_mask)


def kl_to_masked_prior(q: Distribution, prior: MaskedPrior) -> Array:
    """The site's mean-field term :math:`m_p \\mathrm{KL}(q \\| p) + (m_p - m_q) H(q)`
    (:math:`m_q \\log q(v) - m_p \\log p(v)` for a ``Delta`` guide at ``v``); raises
    ``NotImplementedError`` (the ELBO then uses its Monte Carlo term) where a part has no closed
    form."""
    guide_mask = None
    if isinstance(q, MaskedDistribution):
        guide_mask, q = combine_masks(q._mask), q.base_dist
    model_mask = prior.model_mask
    if isinstance(q, Delta):
        log_density = jnp.asarray(q.log_density)
        return _weight(guide_mask, log_density.dtype) * log_density - prior.log_prob(q.v)
    q_table, p_table = discrete_log_probs(q), discrete_log_probs(prior.base)
    if q_table is not None and p_table is not None:
        keep = jnp.expand_dims(jnp.asarray(model_mask), -1)
        # masked-out rows against q itself: a zero KL there, finite even for a degenerate prior
        kl = categorical_kl(q_table, jnp.where(keep, p_table, jax.lax.stop_gradient(q_table)))
        negative_entropy = categorical_kl(q_table, jnp.zeros_like(q_table))
    else:
        kl = kl_divergence(q, prior.base)
        negative_entropy = -q.entropy()
    p_weight, q_weight = _weight(model_mask, kl.dtype), _weight(guide_mask, kl.dtype)
    return jnp.where(p_weight > 0, kl, 0.0) - (p_weight - q_weight) * negative_entropy


# Explicit pairs: (Delta, Distribution) and the like are registered by NumPyro and would be
# ambiguous.
for _guide_type in (Distribution, Delta, ExpandedDistribution, MaskedDistribution):
    kl_divergence.register(_guide_type, MaskedPrior)(kl_to_masked_prior)
