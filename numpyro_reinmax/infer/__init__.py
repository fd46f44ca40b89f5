"""Inference helpers for discrete sites (NumPyro): ELBOs that accept reparameterized discrete
guide sites, the ``AutoReinMax`` autoguide, and the ``ReinMaxReparam`` reparameterizer with its
``ReinMaxStrategy`` config function; and
``TraceLocalEnum_ELBO``, which gives every model factor the gradient of its multilinear extension
in the sampled discrete values; ``TraceRLOO_ELBO``, the unbiased leave-one-out multi-sample ELBO
for non-reparameterized guide sites, and ``TraceDisARM_ELBO``, the unbiased antithetic one for
Bernoulli guide sites; ``infer_discrete`` for models with one-hot sites; ``run_checked``,
``SVI.run`` that stops at the first non-finite step and names it."""

from .autoguide import AutoReinMax
from .checked import run_checked
from .disarm import TraceDisARM_ELBO
from .discrete import infer_discrete
from .elbo import Trace_ELBO, TraceMeanField_ELBO
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
    "Trace_ELBO",
    "infer_discrete",
    "run_checked",
]
