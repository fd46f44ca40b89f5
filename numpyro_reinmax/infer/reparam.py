"""Reparameterize a model's one-hot categorical and Bernoulli sites with ReinMax (NumPyro).

``numpyro.handlers.reparam(model, config={"z": ReinMaxReparam()})`` turns the model's one-hot (or
Bernoulli) site ``z`` into its ReinMax counterpart on the same parameters, without editing the
model. ``config=ReinMaxStrategy()`` does it for every latent site of that kind.
"""

from __future__ import annotations

from jax.typing import ArrayLike
from numpyro.distributions import Distribution
from numpyro.infer.reparam import Reparam

from ..families import check_estimator, reparameterized, support_kind
from ..validation import check_temperature

__all__ = ["ReinMaxReparam", "ReinMaxStrategy"]


class ReinMaxReparam(Reparam):
    """Replace a latent one-hot categorical or Bernoulli site by its reparameterized counterpart.

    Args:
        temperature: the estimator's temperature (its backward only).
        estimator: ``"reinmax"`` (default) or any other rule of the estimator table
            (``"straight_through"``, ``"gumbel_straight_through"``, ``"gapped_straight_through"``,
            ``"gumbel_rao"``, ``"reinmax_rao"``, ``"reinmax_cv"``), with its default options.

    Observed sites are left as they are.
    """

    def __init__(self, temperature: float = 1.0, estimator: str = "reinmax") -> None:
        self.temperature = check_temperature(temperature)
        self.estimator = check_estimator(estimator, reparameterized_only=True)

    def __call__(
        self, name: str, fn: Distribution, obs: ArrayLike | None
    ) -> tuple[Distribution, ArrayLike | None]:
        if obs is not None:
            return fn, obs
        return reparameterized(fn, self.estimator, self.temperature), None


class ReinMaxStrategy:
    """A config function: :class:`ReinMaxReparam` for every latent site with a one-hot or boolean
    support, nothing for the others. ``numpyro.handlers.reparam(model, config=ReinMaxStrategy())``.

    Args:
        temperature, estimator: as :class:`ReinMaxReparam`.
    """

    def __init__(self, temperature: float = 1.0, estimator: str = "reinmax") -> None:
        self.temperature = check_temperature(temperature)
        self.estimator = check_estimator(estimator, reparameterized_only=True)

    def __call__(self, site: dict) -> ReinMaxReparam | None:
        if site["is_observed"] or support_kind(site["fn"].support) not in ("one_hot", "bernoulli"):
            return None
        return ReinMaxReparam(self.temperature, self.estimator)
