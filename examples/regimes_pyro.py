"""A regime-switching chain of 200 integer sites in a plain loop, in Pyro (see ``regimes.py``).

Written as a Pyro user writes a change-point model for ``TraceEnum_ELBO``: ``dist.Categorical``
states, the transition row and the level selected by indexing (``trans[z]``, ``levels[z]``), one
site per step, no ``pyro.markov``. Exact enumeration needs one tensor dim per step and fails
outright; ``hybrid`` sums out the first steps that fit and samples the rest; ``reinmax-local``
and ``st-local`` sample every step under ``TraceLocalEnum_ELBO`` (2 slots: a perturbation
dimension of 2 K elements whatever the length). The mean-field methods cannot fit integer
sites (an integer has no pathwise gradient) and are skipped. Globals are point estimates.

Metric: the held-out log-likelihood per step at the fitted parameters, regimes summed out by
the forward algorithm (``regimes.py``).

    python examples/regimes_pyro.py      # ReinMax and straight-through under TraceLocalEnum_ELBO
"""

from __future__ import annotations

import sys

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from reinmax_examples.defaults import DEFAULTS
from reinmax_examples.methods import LOCAL_METHODS, demo
from reinmax_examples.regimes import LENGTH, Parameters, log_likelihood_per_step, sequences, start
from reinmax_examples.svi_pyro import fit_param_sites

METRIC = "held-out log-likelihood per step"
METRIC_UNIT = "nats per step"
TIE = 0.01  # nats per step: differences below this are seed noise
PARAMETERS = ("init", "trans", "levels", "scale")
SCORE_FUNCTION_METHODS = ("reinforce", "rloo")


def configure(args) -> dict:
    """The run's settings: the command's arguments, or this model's defaults."""
    return {
        "length": args.length or LENGTH,
        "steps": args.steps or DEFAULTS["regimes"]["steps"],
        "lr": args.lr or DEFAULTS["regimes"]["lr"],
        "temperature": args.temperature or DEFAULTS["regimes"]["temperature"],
    }


def model(x: torch.Tensor, start: dict) -> None:
    init = pyro.param("init", lambda: start["init"].clone(), constraint=constraints.simplex)
    trans = pyro.param("trans", lambda: start["trans"].clone(), constraint=constraints.simplex)
    levels = pyro.param("levels", lambda: start["levels"].clone())
    scale = pyro.param("scale", lambda: start["scale"].clone(), constraint=constraints.positive)
    with pyro.plate("sequences", x.shape[0]):
        z = pyro.sample("z_0", dist.Categorical(init))
        pyro.sample("x_0", dist.Normal(levels[z], scale), obs=x[:, 0])
        for t in range(1, x.shape[1]):
            z = pyro.sample(f"z_{t}", dist.Categorical(trans[z]))
            pyro.sample(f"x_{t}", dist.Normal(levels[z], scale), obs=x[:, t])


class Problem:
    """The training and test sequences, and the start every method shares."""

    def __init__(self, config: dict, seed: int, device: str = "cpu") -> None:
        train, test = sequences(config["length"])
        self.train = torch.tensor(train, device=device)
        self.test = test
        self.start = {k: torch.tensor(v, device=device) for k, v in vars(start(seed)).items()}
        self.discrete_sites = [f"z_{t}" for t in range(train.shape[1])]


def skip_reason(problem: Problem, method: str) -> str | None:
    if method in LOCAL_METHODS or method in SCORE_FUNCTION_METHODS or method == "enum":
        return None  # enumeration runs, and fails: the record says why
    return (
        "integer sites: an integer value has no pathwise gradient under TraceMeanField_ELBO "
        "(the -local methods give ReinMax and straight-through theirs)"
    )


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
    """The exact held-out log-likelihood per step."""
    return {"metric": log_likelihood_per_step(problem.test, fitted)}


def main() -> None:
    demo(
        sys.modules[__name__],
        {"length": LENGTH, "steps": 300, "lr": 0.05, "temperature": 1.0},
        ["reinmax-local", "st-local"],
    )


if __name__ == "__main__":
    main()
