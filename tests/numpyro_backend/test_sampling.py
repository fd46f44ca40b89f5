"""Samples follow the categorical law exactly (chi-square goodness of fit), are exactly one-hot,
and never hit a masked category (JAX)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from tests_numpyro_helpers import assert_categorical_law

import numpyro_reinmax as nr
from numpyro_reinmax.estimators import RULES
from numpyro_reinmax.sampling import (
    draw_exponentials,
    draw_index,
    draw_one_hot,
    perturbed_logits_given_index,
)

NUM_DRAWS = 40_000
PROBS = np.array([0.5, 0.2, 0.0, 0.15, 0.1, 0.05, 0.0])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_draw_one_hot(dtype, key):
    probs = jnp.broadcast_to(jnp.asarray(PROBS, dtype), (NUM_DRAWS, len(PROBS)))
    assert_categorical_law(draw_one_hot(key, probs), PROBS)


ESTIMATOR_OPS = [getattr(nr, name) for name in RULES]


@pytest.mark.parametrize("estimator", ESTIMATOR_OPS, ids=lambda e: e.__name__)
@pytest.mark.parametrize("temperature", [0.5, 2.0])
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


# Equal logits this large swamp Gumbel noise in ``logits + G``; the draw must stay exact.
LARGE_EQUAL_LOGITS = [
    (jnp.float32, 1e7),
    (jnp.float32, 1e30),
    (jnp.bfloat16, 100.0),
    (jnp.float16, 1000.0),
    (jnp.float64, 1e300),
]


@pytest.mark.parametrize(("dtype", "magnitude"), LARGE_EQUAL_LOGITS)
@pytest.mark.parametrize("estimator", ESTIMATOR_OPS, ids=lambda e: e.__name__)
def test_draws_stay_exact_for_large_logits(estimator, dtype, magnitude, key):
    logits = jnp.full((4_000, 3), magnitude, dtype=dtype).at[:, 2].set(-jnp.inf)
    sample, _ = estimator(key, logits)
    assert_categorical_law(np.asarray(sample, np.float64), [0.5, 0.5, 0.0])


def test_perturbed_logits_given_index_follow_gumbel_max(key):
    """Index by inverse CDF, then ``logits + G`` given it: the pair has Gumbel-max's joint law.
    Pinned by: the argmax is the index, and each unmasked ``z_j - logits_j`` is a standard Gumbel
    (Kolmogorov-Smirnov) once the index is integrated out."""
    index_key, noise_key = jax.random.split(key)
    logits = jnp.broadcast_to(jnp.log(PROBS), (NUM_DRAWS // 4, len(PROBS)))
    index = draw_index(index_key, jax.nn.softmax(logits, -1))
    exponentials = draw_exponentials(noise_key, logits.shape, logits.dtype)
    perturbed = perturbed_logits_given_index(logits, index, exponentials)
    np.testing.assert_array_equal(perturbed.argmax(-1), index)
    unmasked = PROBS > 0
    assert np.isneginf(perturbed[:, ~unmasked]).all()
    for column in np.asarray(perturbed - logits)[:, unmasked].T:
        assert scipy.stats.kstest(column, scipy.stats.gumbel_r.cdf).pvalue > 1e-4
