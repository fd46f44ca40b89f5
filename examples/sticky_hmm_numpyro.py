"""The sticky hidden Markov chain of :mod:`reinmax_examples.sticky_hmm_pyro` in NumPyro, written
as Pyro's ``examples/hmm.py`` writes its models: a ``markov`` loop over the steps, the transition
row picked with ``Vindex`` by the previous state, the first state drawn from state 0's row."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.funsor import config_enumerate, markov
from numpyro.infer import TraceEnum_ELBO
from numpyro.ops.indexing import Vindex

STAY, NOISE = 0.95, 2.0
LOCS = (-1.0, 0.0, 1.0)


def sticky_hmm(sequence) -> None:
    probs_x = STAY * jnp.eye(3) + (1 - STAY) / 2 * (1 - jnp.eye(3))
    locs = jnp.array(LOCS)
    x = 0
    for t in markov(range(len(sequence))):
        x = numpyro.sample(f"x_{t}", dist.Categorical(Vindex(probs_x)[x]))
        numpyro.sample(f"y_{t}", dist.Normal(locs[x], NOISE), obs=sequence[t])


def log_evidence(sequence) -> float:
    """The exact log evidence, every state summed out (a Python loop: NumPyro's enumeration is
    exact here)."""
    elbo = TraceEnum_ELBO(max_plate_nesting=0)
    model = config_enumerate(sticky_hmm)
    return -float(elbo.loss(jax.random.PRNGKey(0), {}, model, lambda s: None, sequence))
