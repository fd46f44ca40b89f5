"""Which estimator to pair with TraceLocalEnum_ELBO: the spread of the guide-parameter gradient of
ReinMax and straight-through (both unbiased there at temperature 1) on models written as users
write them, at the same fixed guide parameters.

Under ``TraceLocalEnum_ELBO`` the gradient of the loss in site ``i``'s one-hot value is the factor
scores with ``i`` set to each category and every other site at its draw: it does not depend on
``i``'s own draw. Straight-through maps it through ``J(pi)`` alone (the local expectation gradient
of Titsias and Lazaro-Gredilla, 2015); ReinMax through ``2 J(pi1) - J(pi)/2`` with ``pi1 = (pi +
D_i) / 2``, which also depends on ``i``'s draw ``D_i`` and has straight-through's value as its
mean over ``D_i``. So straight-through is ReinMax Rao-Blackwellised over each site's own draw, and
its variance per coordinate can only be lower; this measures by how much.

Models (Pyro, integer ``dist.Categorical`` sites unless said): a two-component mixture in the
form of Pyro's GMM tutorial (``locs[z]``, 100 points); a 60-step regime chain in a plain loop
(``trans[z_prev]``); one observation of ten 4-state parents (a table of 4^10 entries); the
factorial HMM of ``reinmax-compare fhmm`` (one-hot sites, 4 chains). Each guide is ``AutoReinMax``
with ``AutoDelta`` for continuous sites; its parameters are set to the same random values for both
estimators; each gets ``--draws`` gradients. Reported: the total variance (trace of the
covariance) of each, their ratio, and the mean over coordinates of the squared difference of the
two mean gradients in units of its standard error (about 1 when both estimate the same gradient).

    python benchmarks/local_enum_estimators.py    # writes results/local_enum_estimators.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoDelta
from rich.console import Console
from rich.table import Table

from pyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO
from reinmax_examples import fhmm_pyro
from reinmax_examples.factorial_hmm import sequences, start

ESTIMATORS = ("reinmax", "straight_through")
RESULTS = Path(__file__).parent / "results" / "local_enum_estimators.json"


def mixture():
    generator = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(50, generator=generator) - 2, torch.randn(50, generator=generator) + 2]
    )

    def model(x):
        weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Categorical(weights))
            pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)

    return model, (x,)


def regime_chain(steps: int = 60):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(steps, generator=generator) + torch.arange(steps).remainder(20).lt(10) * 3.0
    levels, trans = torch.tensor([0.0, 3.0, -2.0]), torch.full((3, 3), 0.1) + 0.7 * torch.eye(3)

    def model(x):
        z = 0
        for t in range(len(x)):
            z = pyro.sample(f"z_{t}", dist.Categorical(trans[z]))
            pyro.sample(f"x_{t}", dist.Normal(levels[z], 1.0), obs=x[t])

    return model, (x,)


def ten_parents(parents: int = 10, states: int = 4):
    generator = torch.Generator().manual_seed(2)
    table = torch.randn((states,) * parents, generator=generator)

    def model():
        z = [
            pyro.sample(f"z_{i}", dist.Categorical(torch.ones(states) / states))
            for i in range(parents)
        ]
        pyro.sample("y", dist.Normal(table[tuple(z)], 1.0), obs=torch.tensor(0.5))

    return model, ()


def factorial_hmm(chains: int = 4, length: int = 10):
    train, _ = sequences(chains, length)
    initial = {k: torch.tensor(v) for k, v in vars(start(chains, 0)).items()}
    return fhmm_pyro.model, (torch.tensor(train), initial)


MODELS = {
    "mixture (GMM tutorial form)": mixture,
    "regime chain, 60 steps": regime_chain,
    "ten 4-state parents": ten_parents,
    "factorial HMM, 4 chains (one-hot)": factorial_hmm,
}


def gradients(model, arguments, estimator: str, draws: int) -> np.ndarray:
    """``draws`` flat gradients of the loss in the guide's parameters, at parameters set from a
    fixed seed (the same for every estimator)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoReinMax(model, estimator=estimator, continuous_guide=AutoDelta)
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    elbo.loss(model, guide, *arguments)
    parameters = [parameter for _, parameter in sorted(guide.named_parameters())]
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in parameters:
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            )
    samples = []
    for _ in range(draws):
        loss = elbo.differentiable_loss(model, guide, *arguments)
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
        flat = [
            torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads, strict=True)
        ]
        samples.append(torch.cat([g.reshape(-1) for g in flat]).double().numpy())
    return np.stack(samples)


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("--draws", type=int, default=400)
    arguments.add_argument("--out", type=Path, default=RESULTS)
    args = arguments.parse_args()
    rows = []
    for label, build in MODELS.items():
        model, model_arguments = build()
        draws = {e: gradients(model, model_arguments, e, args.draws) for e in ESTIMATORS}
        variance = {e: float(d.var(0, ddof=1).sum()) for e, d in draws.items()}
        difference = draws["reinmax"].mean(0) - draws["straight_through"].mean(0)
        standard_error = np.sqrt(sum(d.var(0, ddof=1) for d in draws.values()) / args.draws)
        varies = standard_error > 0
        agreement = float(np.mean((difference[varies] / standard_error[varies]) ** 2))
        rows.append(
            {
                "model": label,
                "variance": variance,
                "ratio": variance["straight_through"] / variance["reinmax"],
                "mean_squared_standardised_difference": agreement,
                "parameters": int(difference.size),
            }
        )
    table = Table(title=f"TraceLocalEnum_ELBO: gradient spread over {args.draws} draws")
    for column in (
        "model",
        "ReinMax total variance",
        "straight-through",
        "ratio ST / ReinMax",
        "mean (diff / s.e.)^2",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["model"],
            f"{row['variance']['reinmax']:.4g}",
            f"{row['variance']['straight_through']:.4g}",
            f"{row['ratio']:.3f}",
            f"{row['mean_squared_standardised_difference']:.2f}",
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"draws": args.draws, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
