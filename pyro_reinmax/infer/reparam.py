"""Reparameterize a model's one-hot categorical and Bernoulli sites with ReinMax (Pyro).

``poutine.reparam(model, config={"z": ReinMaxReparam()})`` turns the model's ``OneHotCategorical``
(or ``Bernoulli``) site ``z`` into its ReinMax counterpart on the same parameters: the site gains
``rsample`` with ReinMax gradients and a ``log_prob`` differentiable in the value, without editing
the model (the design Pyro issue 2689 asked for). ``config=ReinMaxStrategy()`` does it for every
latent site of that kind. Enumeration of the model still works: the ReinMax classes enumerate.
"""

from __future__ import annotations

from pyro.infer.reparam.reparam import Reparam
from pyro.infer.reparam.strategies import Strategy

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

    def apply(self, msg: dict) -> dict:
        fn = msg["fn"]
        if not msg["is_observed"]:
            fn = reparameterized(fn, self.estimator, self.temperature)
        return {"fn": fn, "value": msg["value"], "is_observed": msg["is_observed"]}


class ReinMaxStrategy(Strategy):
    """A config function: :class:`ReinMaxReparam` for every latent site with a one-hot or boolean
    support, nothing for the others. ``poutine.reparam(model, config=ReinMaxStrategy())``.

    Args:
        temperature, estimator: as :class:`ReinMaxReparam`.
    """

    def __init__(self, temperature: float = 1.0, estimator: str = "reinmax") -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.estimator = check_estimator(estimator, reparameterized_only=True)

    def configure(self, msg: dict) -> ReinMaxReparam | None:
        if msg["is_observed"] or support_kind(msg["fn"].support) not in ("one_hot", "bernoulli"):
            return None  # integer sites have no reparameterized counterpart
        return ReinMaxReparam(self.temperature, self.estimator)
