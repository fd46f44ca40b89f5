"""Inference helpers for guides with reparameterized discrete sites (NumPyro)."""

from .elbo import Trace_ELBO, TraceMeanField_ELBO

__all__ = ["TraceMeanField_ELBO", "Trace_ELBO"]
