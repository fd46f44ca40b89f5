"""ReinMax for Pyro: reparameterized one-hot categorical and Bernoulli distributions.

ReinMax (Liu et al., "Bridging Discrete and Backpropagation: Straight-Through and Beyond",
NeurIPS 2023) draws exact categorical samples and backpropagates a second-order accurate gradient
at the cost of straight-through. Swap a ``dist.Categorical`` site for a one-hot
:class:`ReinMaxOneHotCategorical` in the guide and fit the model with SVI.
"""

from . import kl as _kl  # noqa: F401  (registers the analytic KL divergences)
from .bernoulli import GumbelStraightThroughBernoulli, ReinMaxBernoulli, StraightThroughBernoulli
from .estimators import gumbel_straight_through, reinmax, straight_through
from .mixture import OneHotMixture
from .one_hot import (
    GumbelStraightThroughOneHotCategorical,
    OneHotCategorical,
    ReinMaxOneHotCategorical,
    StraightThroughOneHotCategorical,
)

__version__ = "0.1.0"

__all__ = [
    "GumbelStraightThroughBernoulli",
    "GumbelStraightThroughOneHotCategorical",
    "OneHotCategorical",
    "OneHotMixture",
    "ReinMaxBernoulli",
    "ReinMaxOneHotCategorical",
    "StraightThroughBernoulli",
    "StraightThroughOneHotCategorical",
    "__version__",
    "gumbel_straight_through",
    "reinmax",
    "straight_through",
]
