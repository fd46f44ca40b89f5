r"""A traced sample site's log-density, as NumPyro's own ELBOs compute it.

A site drawn from a ``TransformedDistribution`` (every continuous site of NumPyro's autoguides)
keeps the transforms' intermediate values in its trace: :math:`\log q(y)` is then
:math:`\log q_0(x) - \log |\det \partial y / \partial x|` at the drawn :math:`x`, with no inverse
of the transforms. Calling ``site["fn"].log_prob(site["value"])`` inverts them instead: inexact,
and at the boundary of a simplex (a stick-breaking coordinate that underflows to exactly 0, as
a topic's probability of a rare word does) its gradient is ``inf - inf``: NaN parameters.
"""

from __future__ import annotations

from jax import Array

__all__ = ["site_log_prob"]


def site_log_prob(site: dict) -> Array:
    """The log-density of ``site["value"]`` under ``site["fn"]``, from the site's intermediates
    where the trace has them (as :func:`numpyro.infer.util.log_density`)."""
    intermediates = site.get("intermediates")
    if intermediates:
        return site["fn"].log_prob(site["value"], intermediates)
    return site["fn"].log_prob(site["value"])
