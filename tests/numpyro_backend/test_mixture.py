"""OneHotMixture (NumPyro): the linear-in-z mixture likelihood, against per-component densities."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpyro.infer import TraceEnum_ELBO

import numpyro_reinmax as nr

LOCS = jnp.array([-1.0, 0.0, 2.0])
SCALES = jnp.array([0.5, 1.0, 2.0])
X = jnp.array([-1.2, 0.3, 1.9, 4.0])
Z = jax.nn.one_hot(jnp.array([0, 2, 1, 2]), 3)


def test_log_prob_is_the_selected_component_density():
    d = nr.OneHotMixture(Z, dist.Normal(LOCS, SCALES))
    index = jnp.array([0, 2, 1, 2])
    np.testing.assert_allclose(d.log_prob(X), dist.Normal(LOCS[index], SCALES[index]).log_prob(X))
    assert d.batch_shape == (4,) and d.event_shape == ()


def test_gradient_in_the_assignment_is_the_component_log_density():
    grad = jax.grad(lambda z: nr.OneHotMixture(z, dist.Normal(LOCS, SCALES)).log_prob(X).sum())(Z)
    np.testing.assert_allclose(grad, dist.Normal(LOCS, SCALES).log_prob(X[:, None]))


def test_multivariate_components(key):
    locs = jax.random.normal(key, (3, 2))
    z = jax.nn.one_hot(jnp.array([1, 0]), 3)
    value = jax.random.normal(jax.random.PRNGKey(1), (2, 2))
    d = nr.OneHotMixture(z, dist.Normal(locs, 1.0).to_event(1))
    assert d.event_shape == (2,) and d.batch_shape == (2,)
    expected = dist.Normal(locs[jnp.array([1, 0])], 1.0).to_event(1).log_prob(value)
    np.testing.assert_allclose(d.log_prob(value), expected)
    np.testing.assert_allclose(d.mean, locs[jnp.array([1, 0])])
    assert d.sample(key, (5,)).shape == (5, 2, 2)


def test_model_enumeration_gives_the_marginal_likelihood(key):
    weights = jnp.array([0.2, 0.5, 0.3])

    def model():
        with numpyro.plate("data", 4):
            z = numpyro.sample("z", nr.OneHotCategorical(probs=weights))
            numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(LOCS, SCALES)), obs=X)

    loss = TraceEnum_ELBO().loss(key, {}, nr.enum_onehot(model), lambda: None)
    marginal = dist.MixtureSameFamily(dist.Categorical(probs=weights), dist.Normal(LOCS, SCALES))
    np.testing.assert_allclose(-loss, marginal.log_prob(X).sum(), rtol=1e-12)


def test_components_with_zero_density_contribute_only_where_selected():
    """Poisson(0) gives 2 a density of exactly 0: selected, -inf; not selected, no effect."""
    components = dist.Poisson(jnp.array([1.0, 0.0]))
    value = jnp.array([2.0, 2.0])
    log_prob = nr.OneHotMixture(jnp.eye(2), components).log_prob(value)
    assert log_prob[0] == dist.Poisson(1.0).log_prob(2.0) and log_prob[1] == -jnp.inf
    grad = jax.grad(lambda z: nr.OneHotMixture(z, components).log_prob(value[:1]).sum())(
        jnp.eye(2)[:1]
    )
    assert jnp.isfinite(grad).all()


@pytest.mark.parametrize(
    ("assignment", "components", "match"),
    [
        (jnp.eye(2), dist.Normal(jnp.zeros(3), 1.0), "3 categories"),
        (jnp.eye(3), dist.Normal(0.0, 1.0), "batch axis of components"),
        (jnp.arange(3).reshape(3, 1), dist.Normal(jnp.zeros(3), 1.0), "enum_onehot"),
    ],
)
def test_shape_errors(assignment, components, match):
    with pytest.raises(ValueError, match=match):
        nr.OneHotMixture(assignment, components)


def test_values_outside_the_component_support_are_refused():
    d = nr.OneHotMixture(jnp.eye(2), dist.Exponential(jnp.ones(2)), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(jnp.array([-1.0, 1.0]))


@pytest.mark.parametrize("parameter", ["probs", "logits"])
def test_categorical_components_are_scored_by_a_gather(parameter, key):
    logits = jax.nn.log_softmax(jax.random.normal(key, (3, 50)), -1)
    component = dist.Categorical(**{parameter: jnp.exp(logits) if parameter == "probs" else logits})
    words = jax.random.randint(key, (7,), 0, 50)
    index = jax.random.randint(jax.random.PRNGKey(1), (7,), 0, 3)
    ours = nr.OneHotMixture(jax.nn.one_hot(index, 3), component).log_prob(words)
    np.testing.assert_allclose(ours, logits[index, words], rtol=1e-10)
    enumerated = nr.OneHotMixture(jnp.eye(3).reshape(3, 1, 3), component).log_prob(words)
    np.testing.assert_allclose(enumerated, logits[:, words], rtol=1e-10)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, (3, 3), elements=st.sampled_from([0.0, 1.0, 0.5, 2.0, -1.0])))
def test_assignment_must_be_one_hot(assignment):
    """With validation on, a row that is not one-hot (probabilities, a relaxed sample) raises."""
    one_hot = all(sorted(row) == [0.0, 0.0, 1.0] for row in assignment)
    components = dist.Normal(jnp.zeros(3), 1.0)
    if one_hot:
        nr.OneHotMixture(jnp.asarray(assignment), components)
    else:
        with pytest.raises(ValueError, match="assignment must be one-hot"):
            nr.OneHotMixture(jnp.asarray(assignment), components)
    nr.OneHotMixture(jnp.asarray(assignment), components, validate_args=False)
