"""A factorial HMM on a documented synthetic data set, in Pyro (see ``factorial_hmm.py``).

Written as a Pyro user writes an HMM: each chain's transition row is *selected* by its previous
one-hot state, ``z_prev @ trans[m]``, and the emission mean by the current states,
``sum_m z[m] @ weights[m]``. Straight-through guides then differentiate a non-linear extension of
the model (``reinmax``, ``st``); ``reinmax-local`` (``TraceLocalEnum_ELBO``) linearises every factor
in its own discrete parents; ``enum`` sums the K^M joint states of every time step exactly (skipped
past ``ENUM_LIMIT`` joint states). Globals are point estimates (``pyro.param``).

Metric: the held-out log-likelihood per time step at the fitted parameters, states summed out
exactly (the forward algorithm on the product space, ``factorial_hmm.py``).

    python examples/fhmm_pyro.py      # ReinMax, ReinMax with TraceLocalEnum_ELBO and enumeration
"""

from __future__ import annotations

import sys

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

import pyro_reinmax as pr
from reinmax_examples.defaults import DEFAULTS
from reinmax_examples.factorial_hmm import (
    LENGTH,
    STATES,
    Parameters,
    log_likelihood_per_step,
    sequences,
    start,
)
from reinmax_examples.methods import ConfigurationError, demo
from reinmax_examples.svi_pyro import fit_param_sites

METRIC = "held-out log-likelihood per time step"
METRIC_UNIT = "nats per time step"
TIE = 0.01  # nats per time step: differences below this are seed noise
ENUM_LIMIT = 4096  # joint states per time step that enumeration is given (6 chains)
MAX_CHAINS = 12
PARAMETERS = ("init", "trans", "weights", "scale")


def configure(args) -> dict:
    """The run's settings: the command's arguments, or this model's defaults."""
    chains = args.chains or 3
    if chains > MAX_CHAINS:
        raise ConfigurationError(f"fhmm: --chains must be at most {MAX_CHAINS}, got {chains}")
    return {
        "chains": chains,
        "length": args.length or LENGTH,
        "steps": args.steps or DEFAULTS["fhmm"]["steps"],
        "lr": args.lr or DEFAULTS["fhmm"]["lr"],
        "temperature": args.temperature or DEFAULTS["fhmm"]["temperature"],
    }


def model(x: torch.Tensor, start: dict) -> None:
    chains, length = start["weights"].shape[0], x.shape[1]
    init = pyro.param("init", lambda: start["init"].clone(), constraint=constraints.simplex)
    trans = pyro.param("trans", lambda: start["trans"].clone(), constraint=constraints.simplex)
    weights = pyro.param("weights", lambda: start["weights"].clone())
    scale = pyro.param("scale", lambda: start["scale"].clone(), constraint=constraints.positive)
    with pyro.plate("sequences", x.shape[0]):
        states = [None] * chains
        for t in pyro.markov(range(length)):
            for m in range(chains):
                probs = init[m] if t == 0 else states[m] @ trans[m]
                states[m] = pyro.sample(f"z_{m}_{t}", pr.OneHotCategorical(probs=probs))
            loc = sum(state @ weights[m] for m, state in enumerate(states))
            pyro.sample(f"x_{t}", dist.Normal(loc, scale).to_event(1), obs=x[:, t])


class Problem:
    """The training and test sequences, and the start every method shares."""

    def __init__(self, config: dict, seed: int, device: str = "cpu") -> None:
        train, test = sequences(config["chains"], config["length"])
        self.train = torch.tensor(train, device=device)
        self.test = test
        self.config = config
        initial = start(config["chains"], seed)
        self.start = {k: torch.tensor(v, device=device) for k, v in vars(initial).items()}
        self.discrete_sites = [
            f"z_{m}_{t}" for t in range(train.shape[1]) for m in range(config["chains"])
        ]


def skip_reason(problem: Problem, method: str) -> str | None:
    joint = STATES ** problem.config["chains"]
    if method == "enum" and joint > ENUM_LIMIT:
        return f"the K^M = {joint:,} joint states per time step exceed ENUM_LIMIT = {ENUM_LIMIT:,}"
    return None


def fit(problem: Problem, method: str, **options) -> Parameters:
    """Fit by ``method`` (``options``: ``seed``, ``config``, ``on_step``, ``on_checkpoint``,
    ``checkpoints``, ``on_compile``); returns the fitted parameters."""
    return fit_param_sites(
        model,
        method,
        names=PARAMETERS,
        parameters=Parameters,
        arguments=(problem.train, problem.start),
        discrete_sites=problem.discrete_sites,
        **options,
    )


def evaluate(problem, fitted: Parameters) -> dict:
    """The exact held-out log-likelihood per time step (either backend's ``Problem``)."""
    return {"metric": log_likelihood_per_step(problem.test, fitted)}


def main() -> None:
    demo(
        sys.modules[__name__],
        {"chains": 3, "length": LENGTH, "steps": 500, "lr": 0.05, "temperature": 1.0},
        ["reinmax", "reinmax-local", "enum"],
    )


if __name__ == "__main__":
    main()
