"""A sigmoid belief network on binarised digits, in NumPyro (see ``sbn_pyro.py``): the same model,
name for name, with ``numpyro.param`` weights initialised as torch's ``nn.Linear``.

    python examples/sbn_numpyro.py
"""

from __future__ import annotations

import sys
from functools import partial

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.optim import optax_to_numpyro

from reinmax_examples.data import digits
from reinmax_examples.methods import demo, minibatches
from reinmax_examples.sbn_pyro import LAYERS, METRIC, METRIC_UNIT, TIE, configure, skip_reason
from reinmax_examples.svi_numpyro import fit_model
from reinmax_examples.vae_numpyro import (
    BATCH,
    TEST_SAMPLES,
    dense,
    importance_metrics,
    trace_log_weights,
)

__all__ = ["LAYERS", "METRIC", "METRIC_UNIT", "TIE", "configure", "skip_reason"]


def encoder(x, *, name: str, units: int):
    """pixels -> one layer's logits (linear)."""
    return dense(f"encoder_{name}", (x.shape[-1], units), x)


def model(x, *, hidden: int, top: int) -> None:
    pixels = x.shape[-1]
    top_logits = numpyro.param("network_top", jnp.zeros(top, jnp.float32))
    with numpyro.plate("data", x.shape[0]):
        logits = jnp.broadcast_to(top_logits, x.shape[:1] + (top,))
        h2 = numpyro.sample("h2", dist.Bernoulli(logits=logits).to_event(1))
        h1_logits = dense("network_middle", (top, hidden), h2)
        h1 = numpyro.sample("h1", dist.Bernoulli(logits=h1_logits).to_event(1))
        x_logits = dense("network_bottom", (hidden, pixels), h1)
        numpyro.sample("x", dist.Bernoulli(logits=x_logits).to_event(1), obs=x)


class Problem:
    """Binarised train and test digits (the same fixed split as the Pyro example)."""

    def __init__(self, config: dict, seed: int, device: str = "cpu") -> None:
        x, _ = digits(config["dataset"])
        x = (x > 0.5).astype(np.float32)
        order = np.random.default_rng(0).permutation(len(x))
        test_size = len(x) // 5
        self.test = jnp.asarray(x[order[:test_size]])
        self.train = jnp.asarray(x[order[test_size:]])
        self.config = config
        self.batches = np.random.default_rng(seed)
        hidden, top = config["layers"]
        self.model = partial(model, hidden=hidden, top=top)
        self.encoders = {
            "h1": partial(encoder, name="h1", units=hidden),
            "h2": partial(encoder, name="h2", units=top),
        }


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
        encoders=problem.encoders,
        discrete_sites=["h1", "h2"],
        create_plates=lambda x: numpyro.plate("data", x.shape[0]),  # batches and test set
        optimizer=optax_to_numpyro(optax.adam(config["lr"])),
    )


def evaluate(problem: Problem, fitted) -> dict:
    """The IWAE bound and the ELBO on the test digits, nats per digit, 100 samples each."""
    weights = trace_log_weights(problem.model, fitted, (problem.test,), TEST_SAMPLES)
    return importance_metrics(weights)


def main() -> None:
    config = {"dataset": "digits", "layers": LAYERS["digits"], "steps": 500, "lr": 1e-3}
    demo(sys.modules[__name__], config | {"temperature": 1.0, "batch": BATCH}, ["reinmax", "st"])


if __name__ == "__main__":
    main()
