r"""An unbiased antithetic ELBO for guides with non-reparameterized Bernoulli sites (Pyro): DisARM
(Dong, Mnih and Tucker, NeurIPS 2020).

Each pair of particles draws every Bernoulli site of the guide from one uniform :math:`u` per
element: :math:`b = 1[u < \sigma(\alpha)]` and :math:`\tilde b = 1[1 - u < \sigma(\alpha)]`; every
other random choice is the same in both (common random numbers). With
:math:`f = \log p(x, z) - \log q(z)` of each particle, the estimate of the gradient with respect to
the logits :math:`\alpha` is

.. math::

   \tfrac12 \big(f(b) - f(\tilde b)\big)\, (-1)^{\tilde b}\, 1[b \ne \tilde b]\, \sigma(|\alpha|),

unbiased (the pathwise gradient of :math:`\log q(b)` at the drawn :math:`b` has mean zero and is
kept, as in ``Trace_ELBO``); reparameterized sites get their pathwise gradient through
:math:`(f(b) + f(\tilde b))/2`. The loss is the mean of :math:`-f` over the particles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.distributions import MaskedDistribution
from pyro.infer.enum import get_importance_trace
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import Distribution

from ..families import unwrap
from .rloo import SurrogateELBO, log_weight

__all__ = ["TraceDisARM_ELBO"]


def _site_mask(fn: Distribution) -> Tensor | bool:
    """The product of the ``MaskedDistribution`` masks around a site's distribution."""
    mask = True
    while hasattr(fn, "base_dist"):
        if isinstance(fn, MaskedDistribution):
            mask = fn._mask & mask if isinstance(fn._mask, Tensor) else mask
        fn = fn.base_dist
    return mask


def is_antithetic_site(msg: dict) -> bool:
    """A latent, non-reparameterized Bernoulli site (possibly wrapped)."""
    if msg["type"] != "sample" or msg["is_observed"]:
        return False
    fn = msg["fn"]
    return not fn.has_rsample and isinstance(unwrap(fn), torch.distributions.Bernoulli)


class _AntitheticBernoulli(Messenger):
    """Draw each latent Bernoulli site as ``u < p`` (or ``1 - u < p``) from one uniform per
    element; refuse any other non-reparameterized discrete latent."""

    def __init__(self, antithetic: bool) -> None:
        super().__init__()
        self.antithetic = antithetic

    def _pyro_sample(self, msg: dict) -> None:
        if msg["is_observed"] or msg["value"] is not None or site_is_subsample(msg):
            return
        fn = msg["fn"]
        if not is_antithetic_site(msg):
            if fn.support.is_discrete and not fn.has_rsample:
                raise ValueError(
                    f"guide site {msg['name']!r} is a non-reparameterized "
                    f"{type(unwrap(fn)).__name__}: TraceDisARM_ELBO estimates gradients for "
                    "Bernoulli sites only. Use TraceRLOO_ELBO for categorical sites, or a "
                    "reparameterized distribution (ReinMaxOneHotCategorical, ...)."
                )
            return
        probs = unwrap(fn).probs.expand(fn.shape())
        u = torch.rand(probs.shape, dtype=probs.dtype, device=probs.device)
        msg["value"] = ((1 - u) if self.antithetic else u).lt(probs).to(probs.dtype)
        msg["done"] = True


class TraceDisARM_ELBO(SurrogateELBO):
    r"""DisARM over ``num_pairs`` antithetic pairs of particles (the estimator in the module
    docstring) for the guide's non-reparameterized Bernoulli sites; every other latent site of
    the guide must be reparameterized.

    Args:
        num_pairs: pairs of particles per step (two evaluations of the model each).
        max_plate_nesting: as for every Pyro ELBO.
    """

    def __init__(
        self, num_pairs: int = 1, max_plate_nesting: float = float("inf"), **kwargs: Any
    ) -> None:
        if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
            raise ValueError(f"num_pairs must be an integer >= 1, got {num_pairs!r}.")
        if "num_particles" in kwargs or "vectorize_particles" in kwargs:
            raise TypeError("TraceDisARM_ELBO takes num_pairs; its particles come in pairs.")
        super().__init__(num_particles=1, max_plate_nesting=max_plate_nesting, **kwargs)
        self.num_pairs = num_pairs

    def _particle(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict, antithetic: bool
    ) -> tuple[Tensor, Trace]:
        """One particle: its :math:`f` and its guide trace."""
        model_trace, guide_trace = get_importance_trace(
            "flat",
            self.max_plate_nesting,
            model,
            _AntitheticBernoulli(antithetic)(guide),
            args,
            kwargs,
        )
        f, _ = log_weight(model_trace, guide_trace, "TraceDisARM_ELBO")
        return f, guide_trace

    def _pair_surrogate(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[Tensor, Tensor]:
        """One pair: the surrogate (its gradient the estimate) and the mean of :math:`f`."""
        state = torch.get_rng_state()
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        f, trace = self._particle(model, guide, args, kwargs, antithetic=False)
        torch.set_rng_state(state)  # the same random numbers for the antithetic particle
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        f_anti, trace_anti = self._particle(model, guide, args, kwargs, antithetic=True)
        surrogate = (f + f_anti) / 2
        difference = (f - f_anti).detach() / 2
        for name, site in trace.nodes.items():
            if not is_antithetic_site(site):
                continue
            b, b_anti = site["value"], trace_anti.nodes[name]["value"]
            logits = unwrap(site["fn"]).logits.expand(b.shape)
            weight = torch.where(b_anti > 0, -1.0, 1.0) * (b != b_anti)
            weight = weight * torch.sigmoid(logits.detach().abs()) * _site_mask(site["fn"])
            if site["mask"] is not None:
                weight = weight * site["mask"]
            surrogate = surrogate + (difference * weight * logits).sum()
        return surrogate, (f + f_anti).detach() / 2

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> Tensor:
        """The surrogate, negated: its gradient is the DisARM estimate."""
        pairs = [self._pair_surrogate(model, guide, args, kwargs) for _ in range(self.num_pairs)]
        surrogate = torch.stack([s for s, _ in pairs]).mean()
        value = torch.stack([v for _, v in pairs]).mean()
        return -(surrogate - surrogate.detach() + value)
