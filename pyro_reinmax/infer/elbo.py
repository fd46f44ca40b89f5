"""``TraceMeanField_ELBO`` with the KL of ``Delta`` guide sites corrected (Pyro).

Autoguides (``AutoNormal``, ``AutoDiagonalNormal``, ...) emit a ``Delta`` site for each latent,
its ``log_density`` holding the log-Jacobian of the transform to the constrained space. Pyro's
registered ``kl_divergence(Delta, q)`` is ``-q.log_prob(v)``: it drops that ``log_density``, so
Pyro's ``TraceMeanField_ELBO`` silently gets the loss and the gradients of every constrained
latent wrong (Dirichlet, LogNormal, ...; measured in ``tests/pyro_backend/test_elbo.py``). NumPyro
fixed the same registration (numpyro PR 1625). This ``TraceMeanField_ELBO`` is Pyro's, with the
guide's ``Delta`` sites scored by :math:`\\mathrm{KL} = \\log q(v) - \\log p(v)`, ``log q(v)`` being
the ``log_density``. Pyro's own registration is left as it is.
"""

from __future__ import annotations

import pyro.infer
from pyro.distributions import Delta, Distribution
from pyro.poutine.messenger import Messenger
from torch.distributions import register_kl

__all__ = ["TraceMeanField_ELBO"]


class DeltaWithDensity(Delta):
    """A ``Delta`` whose KL to any distribution keeps its ``log_density``."""


@register_kl(DeltaWithDensity, Distribution)
def _kl_delta_with_density(p: DeltaWithDensity, q: Distribution):
    return p.log_density - q.log_prob(p.v)


class _KeepDeltaDensity(Messenger):
    """Make the latent ``Delta`` sites of a guide ``DeltaWithDensity``."""

    def _pyro_sample(self, msg) -> None:
        fn = msg["fn"]
        if type(fn) is Delta and not msg["is_observed"]:
            msg["fn"] = DeltaWithDensity(fn.v, fn.log_density, fn.event_dim)


class TraceMeanField_ELBO(pyro.infer.TraceMeanField_ELBO):
    """Pyro's ``TraceMeanField_ELBO`` (analytic KL where registered), with the KL of the guide's
    ``Delta`` sites (those of autoguides) including their ``log_density``. Arguments as Pyro's."""

    def _get_trace(self, model, guide, args, kwargs):
        return super()._get_trace(model, _KeepDeltaDensity()(guide), args, kwargs)
