"""run_checked: svi.run's result when every step is finite; otherwise an error at the first
non-finite step that names it, the parameter and the site."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI

from numpyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO, run_checked

X = jnp.array([-2.1, -1.7, 1.9, 2.4, 2.2])


def mixture(x):
    locs = numpyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", dist.Categorical(jnp.ones(2) / 2))
        numpyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def test_a_finite_run_is_svi_run():
    svi = SVI(mixture, AutoReinMax(mixture), optax.adam(0.05), TraceLocalEnum_ELBO())
    expected = svi.run(jax.random.PRNGKey(0), 30, X, progress_bar=False)
    result = run_checked(svi, jax.random.PRNGKey(0), 30, X, progress_bar=False)
    np.testing.assert_allclose(result.losses, expected.losses, rtol=1e-5)
    for name, value in expected.params.items():
        np.testing.assert_allclose(result.params[name], value, rtol=1e-5, atol=1e-6)


def spread_model(x):
    scale = numpyro.param("scale", 1.0)  # no constraint: a large step makes it negative
    numpyro.sample("x", dist.Normal(0.0, scale), obs=x)


def test_the_first_non_finite_step_is_named_with_its_parameter_and_site():
    svi = SVI(spread_model, lambda x: None, optax.sgd(10.0), TraceLocalEnum_ELBO())
    with numpyro.validation_enabled(False), pytest.raises(FloatingPointError) as error:
        run_checked(svi, jax.random.PRNGKey(0), 5, jnp.zeros(3), progress_bar=False)
    message = str(error.value)
    assert "SVI step 1:" in message  # step 0 is finite and moves the scale below 0
    assert "the loss is nan" in message
    assert "model site 'x' (log-density NaN)" in message


def test_with_validation_on_the_recomputed_step_names_the_site_that_refused():
    svi = SVI(spread_model, lambda x: None, optax.sgd(10.0), TraceLocalEnum_ELBO())
    with numpyro.validation_enabled(True), pytest.raises(FloatingPointError) as error:
        run_checked(svi, jax.random.PRNGKey(0), 5, jnp.zeros(3), progress_bar=False)
    assert "SVI step 1:" in str(error.value)
    assert "invalid scale parameter" in str(error.value)


def test_an_unbounded_density_is_explained():
    def model(x):
        rate = numpyro.param("rate", 1.0, constraint=dist.constraints.positive)
        numpyro.sample("x", dist.Gamma(0.5, rate), obs=x)  # unbounded at x = 0

    svi = SVI(model, lambda x: None, optax.adam(0.1), TraceLocalEnum_ELBO())
    with numpyro.validation_enabled(False), pytest.raises(FloatingPointError) as error:
        run_checked(svi, jax.random.PRNGKey(0), 5, jnp.array([0.0, 1.0]), progress_bar=False)
    assert "SVI step 0: the loss is -inf" in str(error.value)
    assert "model site 'x' (log-density +inf: the density is unbounded" in str(error.value)


def exact_annotations(y):
    """Each annotation is its item's true class (as a Pyro user writes it, with one_hot): any
    other class has probability 0."""
    with numpyro.plate("item", len(y)):
        c = numpyro.sample("c", dist.Categorical(jnp.ones(3) / 3))
        numpyro.sample("y", dist.Categorical(jax.nn.one_hot(c, 3)), obs=y)


def test_an_elbo_of_minus_infinity_warns_under_jit_and_run_checked_names_the_site():
    y = jnp.array([0, 2, 1, 2])
    guide = AutoReinMax(exact_annotations)
    svi = SVI(exact_annotations, guide, optax.adam(0.05), TraceLocalEnum_ELBO())
    with pytest.warns(RuntimeWarning, match="the loss is \\+inf"):
        losses = svi.run(jax.random.PRNGKey(0), 3, y, progress_bar=False).losses
        jax.effects_barrier()
    assert np.isposinf(losses).all()
    with pytest.raises(FloatingPointError) as error:
        run_checked(svi, jax.random.PRNGKey(0), 3, y, progress_bar=False)
    message = str(error.value)
    assert "model site 'y' (log-density -inf: the model gives this value probability 0" in message
    assert "diverged" not in message
    summed = AutoReinMax(exact_annotations, enumerate="auto")
    svi = SVI(exact_annotations, summed, optax.adam(0.05), TraceLocalEnum_ELBO())
    assert np.isfinite(svi.run(jax.random.PRNGKey(0), 3, y, progress_bar=False).losses).all()


@pytest.mark.parametrize("num_steps", [0, 2.0, True])
def test_the_number_of_steps_is_checked(num_steps):
    svi = SVI(spread_model, lambda x: None, optax.sgd(0.1), TraceLocalEnum_ELBO())
    with pytest.raises((TypeError, ValueError), match="num_steps must be"):
        run_checked(svi, jax.random.PRNGKey(0), num_steps, jnp.zeros(3), progress_bar=False)
