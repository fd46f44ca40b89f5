r"""An unbiased multi-sample ELBO for guides with non-reparameterized discrete sites (NumPyro):
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

import jax
import jax.numpy as jnp
from jax import Array
from numpyro import handlers
from numpyro.infer.elbo import ELBO

from .elbo import _RequireGuided
from .site_log_prob import site_log_prob

__all__ = ["TraceRLOO_ELBO"]


def _log_density(trace: dict) -> tuple:
    """``(sum of every latent and observed site's scaled log-density, the same over the latent
    sites without rsample)`` of a trace."""
    total, score = 0.0, 0.0
    for site in trace.values():
        if site["type"] != "sample":
            continue
        log_prob = site_log_prob(site)
        if site["scale"] is not None:
            log_prob = site["scale"] * log_prob
        total = total + jnp.sum(log_prob)
        if not site["is_observed"] and not site["fn"].has_rsample:
            score = score + jnp.sum(log_prob)
    return total, score


def traced_particle(
    model: Callable,
    guide: Callable,
    param_map: dict,
    key: Array,
    args: tuple,
    kwargs: dict,
    loss_name: str,
    wrap_guide: Callable | None = None,
) -> tuple[Array, Array, dict]:
    r"""One particle: :math:`f = \log p(x, z) - \log q(z)`, the log-density of the guide sites
    without ``rsample``, and the guide trace. ``wrap_guide`` wraps the seeded guide (a handler
    that must see the sites' keys); a discrete model latent the guide does not sample is refused.
    """
    guide_key, model_key = jax.random.split(key)
    seeded_guide = handlers.seed(handlers.substitute(guide, data=param_map), guide_key)
    if wrap_guide is not None:
        seeded_guide = wrap_guide(seeded_guide)
    guide_trace = handlers.trace(seeded_guide).get_trace(*args, **kwargs)
    sampled = {name for name, site in guide_trace.items() if site["type"] == "sample"}
    seeded_model = handlers.seed(model, model_key)
    seeded_model = handlers.substitute(handlers.replay(seeded_model, guide_trace), data=param_map)
    guided = _RequireGuided(seeded_model, loss_name, sampled, keep_masks=False)
    model_trace = handlers.trace(guided).get_trace(*args, **kwargs)
    log_p, _ = _log_density(model_trace)
    log_q, score = _log_density(guide_trace)
    return log_p - log_q, score, guide_trace


class TraceRLOO_ELBO(ELBO):
    r"""The ELBO over ``num_particles`` (>= 2) particles (``jax.vmap``), with the leave-one-out
    baseline for every non-reparameterized guide site (the surrogate in the module docstring).

    Args:
        num_particles: :math:`k \ge 2`, the particles drawn in one vectorized pass.
    """

    can_infer_discrete = True

    def __init__(self, num_particles: int = 4) -> None:
        if isinstance(num_particles, bool) or not isinstance(num_particles, int):
            raise TypeError(f"num_particles must be an integer, got {num_particles!r}.")
        if num_particles < 2:
            raise ValueError(
                f"num_particles must be >= 2 for a leave-one-out baseline, got {num_particles}."
            )
        super().__init__(num_particles=num_particles, vectorize_particles=True)

    def loss_with_mutable_state(
        self,
        rng_key: Array,
        param_map: dict,
        model: Callable,
        guide: Callable,
        *args: Any,
        **kwargs: Any,
    ) -> dict:
        def particle(key: Array) -> tuple[Array, Array]:
            f, score, _ = traced_particle(
                model, guide, param_map, key, args, kwargs, "TraceRLOO_ELBO"
            )
            return f, score

        elbo, score = jax.vmap(particle)(jax.random.split(rng_key, self.num_particles))
        baseline = (elbo.sum() - elbo) / (self.num_particles - 1)
        advantage = jax.lax.stop_gradient(elbo - baseline)
        surrogate = elbo + advantage * (score - jax.lax.stop_gradient(score))
        return {"loss": -surrogate.mean(), "mutable_state": None}
