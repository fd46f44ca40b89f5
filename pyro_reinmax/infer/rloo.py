r"""An unbiased multi-sample ELBO for guides with non-reparameterized discrete sites (Pyro):
REINFORCE with the leave-one-out baseline (RLOO; Kool, van Hoof and Welling, 2019).

With :math:`k` particles :math:`z_i \sim q`, :math:`f_i = \log p(x, z_i) - \log q(z_i)` and the
baseline :math:`b_i = \tfrac{1}{k-1} \sum_{j \ne i} f_j`, the surrogate

.. math:: \tfrac1k \sum_i \big[ f_i + \operatorname{sg}(f_i - b_i) \log q_{\mathrm{sf}}(z_i) \big]

(:math:`\operatorname{sg}` stops gradients; :math:`q_{\mathrm{sf}}` the guide's sites without
``rsample``) has the ELBO's value and an unbiased estimate of its gradient: :math:`b_i` does not
depend on :math:`z_i`. Reparameterized sites (continuous, or ReinMax's) get their pathwise gradient
through :math:`f_i` as in ``Trace_ELBO``. Use it with ``AutoReinMax(estimator="score_function")``
or any guide whose discrete sites are plain ``OneHotCategorical`` / ``Bernoulli``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.infer
import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from .elbo import refuse_unguided_latent

__all__ = ["TraceRLOO_ELBO"]


def log_weight(model_trace: Trace, guide_trace: Trace, loss_name: str) -> tuple[Tensor, Tensor]:
    r"""A particle's :math:`f = \log p(x, z) - \log q(z)` and the log-density of its guide sites
    without ``rsample`` (the score-function sites); a discrete latent of the model that the guide
    does not sample is refused."""
    f, score = 0.0, 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if not site["is_observed"] and name not in guide_trace.nodes:
            refuse_unguided_latent(name, site["fn"], loss_name)
        f = f + site["log_prob_sum"]
    for site in guide_trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site) or site["is_observed"]:
            continue
        f = f - site["log_prob_sum"]
        if not site["fn"].has_rsample:
            score = score + site["log_prob_sum"]
    return torch.as_tensor(f), torch.as_tensor(score)


class SurrogateELBO(pyro.infer.Trace_ELBO):
    """A ``Trace_ELBO`` whose subclass defines ``differentiable_loss`` as a surrogate: the loss as
    its value, the estimator's gradient as its gradient; ``loss`` and ``loss_and_grads`` follow."""

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The surrogate's value: the ELBO's Monte-Carlo estimate over the particles, negated."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()


class TraceRLOO_ELBO(SurrogateELBO):
    r"""``Trace_ELBO`` over ``num_particles`` (>= 2) particles, with the leave-one-out baseline
    for every non-reparameterized guide site (the surrogate in the module docstring). The
    particles are traced one after the other, so any model works (no particle plate to
    broadcast against).

    Args:
        num_particles: :math:`k \ge 2`.
        max_plate_nesting: as for every Pyro ELBO.
        **kwargs: passed to ``Trace_ELBO`` (not ``vectorize_particles``).
    """

    def __init__(
        self, num_particles: int = 4, max_plate_nesting: float = float("inf"), **kwargs: Any
    ) -> None:
        if isinstance(num_particles, bool) or not isinstance(num_particles, int):
            raise TypeError(f"num_particles must be an integer, got {num_particles!r}.")
        if num_particles < 2:
            raise ValueError(
                f"num_particles must be >= 2 for a leave-one-out baseline, got {num_particles}."
            )
        if "vectorize_particles" in kwargs:
            raise TypeError("TraceRLOO_ELBO traces its particles one after the other.")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, **kwargs)

    def _particle_terms(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[Tensor, Tensor]:
        """Per particle: :math:`f_i` and the log-density of the score-function sites."""
        terms = [
            log_weight(model_trace, guide_trace, "TraceRLOO_ELBO")
            for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs)
        ]
        return torch.stack([f for f, _ in terms]), torch.stack([score for _, score in terms])

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> Tensor:
        """The surrogate, negated: the loss as value, the RLOO estimate as gradient."""
        elbo, score = self._particle_terms(model, guide, args, kwargs)
        k = self.num_particles
        baseline = (elbo.sum() - elbo) / (k - 1)
        advantage = (elbo - baseline).detach()
        return -(elbo + advantage * (score - score.detach())).mean()
