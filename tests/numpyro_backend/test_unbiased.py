"""At temperature 1 the expected ReinMax gradient of a quadratic equals the exact gradient
(computed by enumeration); straight-through's does not (JAX)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_reinmax as nr
from reference import exact_expected_gradient

NUM_VARIABLES, NUM_CATEGORIES, NUM_SAMPLES = 3, 3, 200_000


def _problem(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(NUM_VARIABLES, NUM_CATEGORIES))
    size = NUM_VARIABLES * NUM_CATEGORIES
    return logits, rng.normal(size=(size, size)), rng.normal(size=size)


def _mean_gradient(estimator, logits, a, b, temperature):
    """Per-sample gradients of f(D) = D^T A D + b^T D over independent draws: mean and s.e."""

    def f(logits, key):
        d = estimator(key, logits, temperature)[0].reshape(-1)
        return d @ a @ d + b @ d

    keys = jax.random.split(jax.random.PRNGKey(7), NUM_SAMPLES)
    per_sample = np.asarray(jax.jit(jax.vmap(jax.grad(f), (None, 0)))(jnp.asarray(logits), keys))
    return per_sample.mean(0), per_sample.std(0) / np.sqrt(NUM_SAMPLES)


def _exact(logits, a, b):
    return exact_expected_gradient(
        logits, lambda d: d.reshape(-1) @ a @ d.reshape(-1) + b @ d.reshape(-1)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_reinmax_is_unbiased_on_quadratics_at_temperature_one(seed):
    logits, a, b = _problem(seed)
    mean, stderr = _mean_gradient(nr.reinmax, logits, a, b, 1.0)
    assert np.all(np.abs(mean - _exact(logits, a, b)) < 5 * stderr + 1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_straight_through_is_biased_on_the_same_quadratics(seed):
    logits, a, b = _problem(seed)
    exact = _exact(logits, a, b)
    mean, stderr = _mean_gradient(nr.straight_through, logits, a, b, 1.0)
    assert (np.abs(mean - exact) / stderr).max() > 10
    assert np.linalg.norm(mean - exact) / np.linalg.norm(exact) > 0.05
