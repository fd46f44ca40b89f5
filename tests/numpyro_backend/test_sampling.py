"""Samples follow the categorical law exactly (chi-square goodness of fit), are exactly one-hot,
and never hit a masked category (JAX)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tests_numpyro_helpers import assert_categorical_law

import numpyro_reinmax as nr
from numpyro_reinmax.sampling import draw_one_hot

NUM_DRAWS = 40_000
PROBS = np.array([0.5, 0.2, 0.0, 0.15, 0.1, 0.05, 0.0])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_draw_one_hot(dtype, key):
    probs = jnp.broadcast_to(jnp.asarray(PROBS, dtype), (NUM_DRAWS, len(PROBS)))
    assert_categorical_law(draw_one_hot(key, probs), PROBS)


@pytest.mark.parametrize("estimator", [nr.reinmax, nr.straight_through, nr.gumbel_straight_through])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_estimator_draws_ignore_the_temperature(estimator, temperature, key):
    logits = jnp.broadcast_to(jnp.log(PROBS), (NUM_DRAWS, len(PROBS)))
    sample, _ = estimator(key, logits, temperature)
    assert_categorical_law(sample, PROBS)


@pytest.mark.parametrize(
    "cls",
    [
        nr.OneHotCategorical,
        nr.ReinMaxOneHotCategorical,
        nr.StraightThroughOneHotCategorical,
        nr.GumbelStraightThroughOneHotCategorical,
    ],
)
@pytest.mark.parametrize("parameter", ["probs", "logits"])
def test_distribution_draws(cls, parameter, key):
    d = cls(**{parameter: jnp.asarray(PROBS) if parameter == "probs" else jnp.log(PROBS)})
    assert_categorical_law(d.sample(key, (NUM_DRAWS,)), PROBS)


@pytest.mark.parametrize(
    "cls", [nr.ReinMaxBernoulli, nr.StraightThroughBernoulli, nr.GumbelStraightThroughBernoulli]
)
def test_bernoulli_draws(cls, key):
    p = jnp.array([0.0, 0.3, 0.9, 1.0])
    values = np.asarray(cls(probs=p).sample(key, (NUM_DRAWS,)))
    assert set(np.unique(values)) <= {0.0, 1.0}
    for column, probability in zip(values.T, np.asarray(p), strict=True):
        assert_categorical_law(
            np.stack([1 - column, column], -1), np.array([1 - probability, probability])
        )


def test_draws_under_jit_and_vmap(key):
    d = nr.ReinMaxOneHotCategorical(logits=jnp.log(PROBS))
    jitted = jax.jit(lambda k: d.sample(k, (NUM_DRAWS,)))(key)
    assert_categorical_law(jitted, PROBS)
    keys = jax.random.split(key, NUM_DRAWS)
    assert_categorical_law(jax.vmap(lambda k: d.sample(k))(keys), PROBS)
