"""The capture-recapture model of :mod:`reinmax_examples.cjs_pyro` in NumPyro, written as a Pyro
user ports Pyro's ``examples/capture_recapture/cjs.py`` ``model_1``: a ``markov`` loop over the
occasions, ``handlers.mask`` for the states before an animal's first capture, survival an
absorbing chain of Bernoulli states. The same generated data as the Pyro example."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.contrib.funsor import markov

from reinmax_examples.cjs_pyro import capture_history as torch_capture_history


def model_1(capture_history) -> None:
    """Pyro's ``model_1`` in NumPyro: constant survival ``phi`` and recapture ``rho``."""
    N, T = capture_history.shape
    phi = numpyro.sample("phi", dist.Uniform(0.0, 1.0))  # survival probability
    rho = numpyro.sample("rho", dist.Uniform(0.0, 1.0))  # recapture probability
    with numpyro.plate("animals", N, dim=-1):
        z = jnp.ones(N)
        # no log probabilities for an animal before its first capture
        first_capture_mask = jnp.zeros(N, bool)
        for t in markov(range(T)):
            with handlers.mask(mask=first_capture_mask):
                mu_z_t = first_capture_mask * phi * z + (1 - first_capture_mask)
                z = numpyro.sample(
                    f"z_{t}",
                    dist.Bernoulli(jnp.clip(mu_z_t, 1e-6, 1 - 1e-6)),
                    infer={"enumerate": "parallel"},
                )
                mu_y_t = rho * z
                numpyro.sample(f"y_{t}", dist.Bernoulli(mu_y_t), obs=capture_history[:, t])
            first_capture_mask = first_capture_mask | capture_history[:, t].astype(bool)


def capture_history(animals: int = 60, occasions: int = 7, seed: int = 0):
    """:func:`reinmax_examples.cjs_pyro.capture_history`'s data as a JAX array."""
    return jnp.asarray(torch_capture_history(animals, occasions, seed).numpy())
