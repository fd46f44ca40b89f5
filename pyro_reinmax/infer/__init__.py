"""Inference helpers for discrete sites (Pyro): the ``AutoReinMax`` autoguide and the
``ReinMaxReparam`` reparameterizer with its ``ReinMaxStrategy`` config function."""

from .autoguide import AutoReinMax
from .reparam import ReinMaxReparam, ReinMaxStrategy

__all__ = ["AutoReinMax", "ReinMaxReparam", "ReinMaxStrategy"]
