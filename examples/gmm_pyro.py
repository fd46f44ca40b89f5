"""A Bayesian Gaussian mixture on the iris (or wine) measurements, in Pyro.

    weights ~ Dirichlet(1)                                  mixture weights, K components
    locs[k] ~ Normal(0, 2)^d,  scales[k] ~ LogNormal(0, 1)^d
    z[n]    ~ OneHotCategorical(weights)                    the discrete latents
    x[n]    ~ sum_k z[n, k] log Normal(x[n] | locs[k], scales[k])   (OneHotMixture: linear in z)

Metric: the log pointwise predictive density of the data with the assignments summed out exactly,
sum_n log mean_s p(x_n | weights_s, locs_s, scales_s), over draws of the globals from the guide.

    python examples/gmm_pyro.py        # ReinMax against exact enumeration, 1 seed
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Predictive
from pyro.infer.autoguide import init_to_feasible, init_to_value

import pyro_reinmax as pr
from reinmax_examples.data import data_source, is_path, measurements
from reinmax_examples.defaults import DEFAULTS
from reinmax_examples.methods import MIXTURE_NOT_RELAXED, ConfigurationError
from reinmax_examples.posteriors import compare_posteriors, log_predictive_density
from reinmax_examples.svi_pyro import fit_model

METRIC = "log predictive density"
METRIC_UNIT = "nats over the data set"
TIE = 1.0  # nats over the data set: differences below this are seed noise
GLOBALS = ("weights", "locs", "scales")


def configure(args) -> dict:
    """The run's settings: the command's arguments, or this model's defaults."""
    dataset = data_source(args, "iris")
    if not is_path(dataset) and dataset not in ("iris", "wine"):
        raise ConfigurationError(f"gmm: --dataset must be iris or wine, got {dataset!r}")
    components = args.components or 3
    rows = len(measurements(dataset)[0])
    if components > rows:
        raise ConfigurationError(
            f"gmm: --components {components} is more than the {rows} rows of {dataset}"
        )
    return {
        "dataset": dataset,
        "components": components,
        "steps": args.steps or DEFAULTS["gmm"]["steps"],
        "lr": args.lr or DEFAULTS["gmm"]["lr"],
        "temperature": args.temperature or DEFAULTS["gmm"]["temperature"],
    }


def model(x: torch.Tensor, num_components: int) -> None:
    n, d = x.shape
    weights = pyro.sample("weights", dist.Dirichlet(x.new_ones(num_components)))
    with pyro.plate("components", num_components):
        locs = pyro.sample("locs", dist.Normal(x.new_zeros(d), 2.0).to_event(1))
        scales = pyro.sample("scales", dist.LogNormal(x.new_zeros(d), 1.0).to_event(1))
    with pyro.plate("data", n):
        z = pyro.sample("z", pr.OneHotCategorical(probs=weights))
        pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, scales).to_event(1)), obs=x)


class Problem:
    """The data and a start shared by every method: component locations at K data points."""

    def __init__(self, config: dict, seed: int, device: str = "cpu") -> None:
        x, self.labels = measurements(config["dataset"])
        self.x = torch.tensor(x, device=device)
        self.num_components = config["components"]
        start = np.random.default_rng(seed).choice(len(x), self.num_components, replace=False)
        self.init = init_to_value(values={"locs": self.x[start]}, fallback=init_to_feasible)


def skip_reason(problem: Problem, method: str) -> str | None:
    if method == "gumbel-softmax":
        return MIXTURE_NOT_RELAXED
    return None  # K values per assignment: every method runs, enumeration included


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
):
    """Fit by ``method``; returns the guide (the globals' posterior)."""
    arguments = (problem.x, problem.num_components)
    return fit_model(
        model,
        method,
        config=config,
        seed=seed,
        arguments=lambda _: arguments,
        on_step=on_step,
        on_checkpoint=on_checkpoint,
        checkpoints=checkpoints,
        on_compile=on_compile,
        init_loc_fn=problem.init,
    )


def posterior_draws(problem: Problem, guide, num_samples: int = 200) -> dict[str, np.ndarray]:
    """Draws of the globals from the guide, components sorted by their first coordinate."""
    predictive = Predictive(model, guide=guide, num_samples=num_samples, return_sites=GLOBALS)
    with torch.no_grad():
        draws = predictive(problem.x, problem.num_components)
    k = problem.num_components
    weights = draws["weights"].reshape(num_samples, k).cpu().numpy()
    locs = draws["locs"].reshape(num_samples, k, -1).cpu().numpy()
    scales = draws["scales"].reshape(num_samples, k, -1).cpu().numpy()
    order = np.argsort(locs.mean(0)[:, 0])
    return {"weights": weights[:, order], "locs": locs[:, order], "scales": scales[:, order]}


def evaluate(problem: Problem, guide) -> dict:
    """The log predictive density of the data, assignments summed out (``posteriors.py``)."""
    x = np.asarray(problem.x.tolist())
    return {"metric": log_predictive_density(x, posterior_draws(problem, guide))}


def report(problem: Problem, guides: dict, out) -> list[str]:
    """The globals' posteriors of every method side by side, with ArviZ."""
    return compare_posteriors({m: posterior_draws(problem, g) for m, g in guides.items()}, out)


def main() -> None:
    config = {"dataset": "iris", "components": 3, "steps": 1000, "lr": 0.05, "temperature": 1.0}
    problem = Problem(config, seed=0)
    for method in ["enum", "reinmax"]:
        guide = fit(problem, method, seed=0, config=config, on_step=lambda *_: None)
        print(f"{method:>8}: {METRIC} {evaluate(problem, guide)['metric']:.2f}")


if __name__ == "__main__":
    main()
