"""Inference helpers for discrete sites (Pyro): the ``AutoReinMax`` autoguide, the
``ReinMaxReparam`` reparameterizer with its ``ReinMaxStrategy`` config function, and a
``TraceMeanField_ELBO`` that scores autoguides' ``Delta`` sites correctly.; and
``TraceLocalEnum_ELBO``, which gives every model factor the gradient of its multilinear extension
in the sampled discrete values; ``TraceRLOO_ELBO``, the unbiased leave-one-out multi-sample ELBO
for non-reparameterized guide sites, and ``TraceDisARM_ELBO``, the unbiased antithetic one for
Bernoulli guide sites; ``infer_discrete`` for models with one-hot sites; ``run_checked``, SVI
steps that stop at the first non-finite one and name it."""

from .autoguide import AutoReinMax
from .checked import run_checked
from .disarm import TraceDisARM_ELBO
from .discrete import infer_discrete
from .elbo import TraceMeanField_ELBO
from .local_enum import TraceLocalEnum_ELBO
from .reparam import ReinMaxReparam, ReinMaxStrategy
from .rloo import TraceRLOO_ELBO

__all__ = [
    "AutoReinMax",
    "ReinMaxReparam",
    "ReinMaxStrategy",
    "TraceDisARM_ELBO",
    "TraceLocalEnum_ELBO",
    "TraceMeanField_ELBO",
    "TraceRLOO_ELBO",
    "infer_discrete",
    "run_checked",
]
