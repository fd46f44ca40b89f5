"""RelaxedOneHotCategorical (Concrete): density against torch's implementation, the law of its
argmax, reparameterized samples on the simplex."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from tests_numpyro_helpers import assert_categorical_law

import numpyro_reinmax as nr


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_log_prob_matches_torch(temperature, key):
    logits = jax.random.normal(key, (4, 5))
    d = nr.RelaxedOneHotCategorical(logits=logits, temperature=temperature)
    value = d.sample(jax.random.PRNGKey(1), (3,))
    reference = torch.distributions.RelaxedOneHotCategorical(
        torch.tensor(temperature, dtype=torch.float64), logits=torch.tensor(np.asarray(logits))
    )
    expected = reference.log_prob(torch.tensor(np.asarray(value))).numpy()
    np.testing.assert_allclose(d.log_prob(value), expected, rtol=1e-8)


def test_masked_categories_reduce_the_simplex(key):
    """With a masked category the law is the relaxed categorical over the others."""
    logits = jnp.array([0.3, -jnp.inf, 1.2, -0.4])
    d = nr.RelaxedOneHotCategorical(logits=logits, temperature=0.7)
    value = d.sample(key, (5,))
    assert (value[:, 1] == 0).all()
    reduced = nr.RelaxedOneHotCategorical(logits=logits[jnp.array([0, 2, 3])], temperature=0.7)
    np.testing.assert_allclose(
        d.log_prob(value), reduced.log_prob(value[:, jnp.array([0, 2, 3])]), rtol=1e-10
    )


def test_argmax_of_samples_follows_the_categorical_law(key):
    probs = np.array([0.5, 0.3, 0.0, 0.2])
    value = nr.RelaxedOneHotCategorical(probs=jnp.asarray(probs), temperature=0.5).sample(
        key, (40_000,)
    )
    assert_categorical_law(jax.nn.one_hot(value.argmax(-1), 4), probs)


def test_samples_are_reparameterized_and_on_the_simplex(key):
    d = nr.RelaxedOneHotCategorical(logits=jnp.zeros(3), temperature=0.5)
    assert d.has_rsample and not d.support.is_discrete
    value = d.sample(key, (100,))
    np.testing.assert_allclose(value.sum(-1), 1.0, rtol=1e-12)
    grad = jax.grad(
        lambda x: nr.RelaxedOneHotCategorical(logits=x, temperature=0.5).sample(key)[0]
    )(jnp.zeros(3))
    assert jnp.abs(grad).sum() > 0


def test_huge_logits_under_jit_give_a_point_of_the_simplex(key):
    """``softmax((logits + G) / tau)`` is NaN under jit for logits of about 1e20 and more."""
    d = nr.RelaxedOneHotCategorical(
        logits=jnp.array([1e30, -1e30, 0.0], jnp.float32), temperature=1.3
    )
    value = jax.jit(d.sample)(key)
    np.testing.assert_allclose(value, [1.0, 0.0, 0.0])
