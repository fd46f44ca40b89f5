"""A Bayesian Gaussian mixture on the iris (or wine) measurements, in NumPyro.

    weights ~ Dirichlet(1)                                  mixture weights, K components
    locs[k] ~ Normal(0, 2)^d,  scales[k] ~ LogNormal(0, 1)^d
    z[n]    ~ OneHotCategorical(weights)                    the discrete latents
    x[n]    ~ sum_k z[n, k] log Normal(x[n] | locs[k], scales[k])   (OneHotMixture: linear in z)

Metric: the log pointwise predictive density of the data with the assignments summed out exactly,
sum_n log mean_s p(x_n | weights_s, locs_s, scales_s), over draws of the globals from the guide.

    python examples/gmm_numpyro.py     # ReinMax against exact enumeration, 1 seed
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import Predictive

import numpyro_reinmax as nr
from reinmax_examples.data import measurements
from reinmax_examples.gmm_pyro import configure, skip_reason
from reinmax_examples.posteriors import compare_posteriors, log_predictive_density
from reinmax_examples.svi_numpyro import fit_model, init_to_value

METRIC = "log predictive density"
METRIC_UNIT = "nats over the data set"
TIE = 1.0  # nats over the data set: differences below this are seed noise
GLOBALS = ("weights", "locs", "scales")
__all__ = ["configure", "skip_reason"]


def model(x, num_components: int) -> None:
    n, d = x.shape
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(num_components)))
    with numpyro.plate("components", num_components):
        locs = numpyro.sample("locs", dist.Normal(jnp.zeros(d), 2.0).to_event(1))
        scales = numpyro.sample("scales", dist.LogNormal(jnp.zeros(d), 1.0).to_event(1))
    with numpyro.plate("data", n):
        z = numpyro.sample("z", nr.OneHotCategorical(probs=weights))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, scales).to_event(1)), obs=x)


class Problem:
    """The data and a start shared by every method: component locations at K data points."""

    def __init__(self, config: dict, seed: int, device: str = "cpu") -> None:
        x, self.labels = measurements(config["dataset"])
        self.x = jnp.asarray(x)
        self.num_components = config["components"]
        start = np.random.default_rng(seed).choice(len(x), self.num_components, replace=False)
        self.init = init_to_value(values={"locs": self.x[start]})


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
    """Fit by ``method``; returns (guide, parameters)."""
    bound = partial(model, num_components=problem.num_components)  # a static size under jit
    arguments = (problem.x,)
    return fit_model(
        bound,
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


def posterior_draws(problem: Problem, fitted, num_samples: int = 200) -> dict[str, np.ndarray]:
    """Draws of the globals from the guide, components sorted by their first coordinate."""
    guide, params = fitted
    predictive = Predictive(
        guide, params=params, num_samples=num_samples, return_sites=list(GLOBALS), parallel=True
    )
    draws = predictive(jax.random.PRNGKey(0), problem.x)
    k = problem.num_components
    weights = np.asarray(draws["weights"]).reshape(num_samples, k)
    locs = np.asarray(draws["locs"]).reshape(num_samples, k, -1)
    scales = np.asarray(draws["scales"]).reshape(num_samples, k, -1)
    order = np.argsort(locs.mean(0)[:, 0])
    return {"weights": weights[:, order], "locs": locs[:, order], "scales": scales[:, order]}


def evaluate(problem: Problem, fitted) -> dict:
    """The log predictive density of the data, assignments summed out (``posteriors.py``)."""
    x = np.asarray(problem.x.tolist())
    return {"metric": log_predictive_density(x, posterior_draws(problem, fitted))}


def report(problem: Problem, fitted: dict, out) -> list[str]:
    """The globals' posteriors of every method side by side, with ArviZ."""
    return compare_posteriors({m: posterior_draws(problem, f) for m, f in fitted.items()}, out)


def main() -> None:
    config = {"dataset": "iris", "components": 3, "steps": 1000, "lr": 0.05, "temperature": 1.0}
    problem = Problem(config, seed=0)
    for method in ["enum", "reinmax"]:
        fitted = fit(problem, method, seed=0, config=config, on_step=lambda *_: None)
        print(f"{method:>8}: {METRIC} {evaluate(problem, fitted)['metric']:.2f}")


if __name__ == "__main__":
    main()
