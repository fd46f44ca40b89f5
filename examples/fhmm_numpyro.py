"""A factorial HMM on a documented synthetic data set, in NumPyro (see ``factorial_hmm.py`` and
``fhmm_pyro.py``): the same model, name for name, with ``numpyro.contrib.funsor.markov`` over
time.

    python examples/fhmm_numpyro.py
"""

from __future__ import annotations

import sys
from functools import partial

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.funsor import markov

import numpyro_reinmax as nr
from reinmax_examples.factorial_hmm import LENGTH, Parameters, sequences, start
from reinmax_examples.fhmm_pyro import (
    METRIC,
    METRIC_UNIT,
    PARAMETERS,
    TIE,
    configure,
    evaluate,
    skip_reason,
)
from reinmax_examples.methods import demo
from reinmax_examples.svi_numpyro import fit_model

__all__ = ["METRIC", "METRIC_UNIT", "TIE", "configure", "evaluate", "skip_reason"]


def model(x, start: dict) -> None:
    chains, length = start["weights"].shape[0], x.shape[1]
    init = numpyro.param("init", start["init"], constraint=dist.constraints.simplex)
    trans = numpyro.param("trans", start["trans"], constraint=dist.constraints.simplex)
    weights = numpyro.param("weights", start["weights"])
    scale = numpyro.param("scale", start["scale"], constraint=dist.constraints.positive)
    with numpyro.plate("sequences", x.shape[0]):
        states = [None] * chains
        for t in markov(range(length)):
            for m in range(chains):
                probs = init[m] if t == 0 else states[m] @ trans[m]
                states[m] = numpyro.sample(f"z_{m}_{t}", nr.OneHotCategorical(probs=probs))
            loc = sum(state @ weights[m] for m, state in enumerate(states))
            numpyro.sample(f"x_{t}", dist.Normal(loc, scale).to_event(1), obs=x[:, t])


class Problem:
    """The training and test sequences, and the start every method shares."""

    def __init__(self, config: dict, seed: int, device: str = "cpu") -> None:
        train, test = sequences(config["chains"], config["length"])
        self.train = jnp.asarray(train)
        self.test = test
        self.config = config
        self.start = {k: jnp.asarray(v) for k, v in vars(start(config["chains"], seed)).items()}
        self.discrete_sites = [
            f"z_{m}_{t}" for t in range(train.shape[1]) for m in range(config["chains"])
        ]


def fit(
    problem: Problem,
    method: str,
    *,
    seed: int,
    config: dict,
    on_step,
    on_checkpoint=None,
    checkpoints=(),
    on_compile=None,
) -> Parameters:
    """Fit by ``method``; returns the fitted parameters."""
    _, params = fit_model(
        partial(model, start=problem.start),
        method,
        config=config,
        seed=seed,
        arguments=lambda _: (problem.train,),
        on_step=on_step,
        on_checkpoint=on_checkpoint
        and (lambda step, seconds, fitted: on_checkpoint(step, seconds, _fitted(fitted[1]))),
        checkpoints=checkpoints,
        on_compile=on_compile,
        discrete_sites=problem.discrete_sites,
    )
    return _fitted(params)


def _fitted(params: dict) -> Parameters:
    """The constrained parameters as NumPy arrays."""
    return Parameters(**{n: np.asarray(params[n], dtype=np.float64) for n in PARAMETERS})


def main() -> None:
    demo(
        sys.modules[__name__],
        {"chains": 3, "length": LENGTH, "steps": 500, "lr": 0.05, "temperature": 1.0},
        ["reinmax", "reinmax-local", "enum"],
    )


if __name__ == "__main__":
    main()
