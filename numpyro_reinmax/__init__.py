"""ReinMax for NumPyro: reparameterized one-hot categorical and Bernoulli distributions (JAX).

ReinMax (Liu et al., "Bridging Discrete and Backpropagation: Straight-Through and Beyond",
NeurIPS 2023) draws exact categorical samples and backpropagates a second-order accurate gradient
at the cost of straight-through. NumPyro calls ``sample`` at every site, so the estimators' custom
VJP lives there. Also: the one-hot categorical and relaxed categorical NumPyro lacks, analytic KL
registrations, the mixture likelihood :class:`OneHotMixture`, and :func:`enum_onehot` for exact
enumeration of one-hot sites.
"""

from . import kl as _kl  # noqa: F401  (registers the analytic KL divergences)
from .constraints import one_hot
from .enumeration import enum_onehot
from .estimators import (
    gapped_straight_through,
    gumbel_rao,
    gumbel_straight_through,
    reinmax,
    reinmax_cv,
    reinmax_rao,
    straight_through,
)
from .families import ESTIMATOR_CLASSES
from .mixture import OneHotMixture
from .native import native_kernels_status, set_native_kernels
from .one_hot import OneHotCategorical
from .relaxed import RelaxedOneHotCategorical

__version__ = "0.1.0"

globals().update(ESTIMATOR_CLASSES)  # ReinMaxOneHotCategorical, ...: every rule's classes

__all__ = [
    *ESTIMATOR_CLASSES,
    "OneHotCategorical",
    "OneHotMixture",
    "RelaxedOneHotCategorical",
    "__version__",
    "enum_onehot",
    "gapped_straight_through",
    "gumbel_rao",
    "gumbel_straight_through",
    "native_kernels_status",
    "one_hot",
    "reinmax",
    "reinmax_cv",
    "reinmax_rao",
    "set_native_kernels",
    "straight_through",
]
