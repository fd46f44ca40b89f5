"""A continuous guide site near the boundary of its support is scored from the trace's
intermediates, as NumPyro's own ELBOs score it: the library's losses give NumPyro's value and a
finite gradient there (inverting the stick-breaking transform gave a loss off by 1e9 nats and NaN
gradients, which turned the LDA example's parameters to NaN)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.handlers import seed, substitute, trace
from numpyro.infer import SVI

import numpyro_reinmax as nr
from numpyro_reinmax.infer import AutoReinMax, Trace_ELBO, TraceLocalEnum_ELBO, TraceRLOO_ELBO
from numpyro_reinmax.infer.site_log_prob import site_log_prob

VOCABULARY = 1000
WORDS = jnp.arange(6) % 3
KEY = jax.random.PRNGKey(3)


def model(words):
    """A topic model's pieces: a sparse Dirichlet over a vocabulary, and a token's topic."""
    with numpyro.plate("tokens", len(words)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(2)))
        numpyro.sample(
            "w", nr.OneHotMixture(z, dist.Normal(jnp.array([-1.0, 1.0]), 1.0)), obs=words
        )
    probs = numpyro.sample("probs", dist.Dirichlet(jnp.full(VOCABULARY, 0.1)))
    numpyro.sample("y", dist.Categorical(probs), obs=words)


@pytest.fixture(scope="module")
def near_the_boundary():
    """The guide and parameters whose draws of ``probs`` reach 1e-285 (finite, not 0)."""
    guide = AutoReinMax(model)
    svi = SVI(model, guide, numpyro.optim.Adam(0.1), Trace_ELBO())
    params = dict(svi.get_params(svi.init(jax.random.PRNGKey(0), WORDS)))
    params["probs_auto_loc"] = jnp.full(VOCABULARY - 1, 5.6)
    params["probs_auto_scale"] = jnp.full(VOCABULARY - 1, 1e-3)
    return guide, params


def test_the_site_is_scored_from_its_intermediates(near_the_boundary):
    guide, params = near_the_boundary
    site = trace(seed(substitute(guide, data=params), 1)).get_trace(WORDS)["probs"]
    assert 0 < float(site["value"].min()) < 1e-250
    from_intermediates = site["fn"].log_prob(site["value"], site["intermediates"])
    assert float(site_log_prob(site)) == float(from_intermediates)
    inverted = site["fn"].log_prob(site["value"])
    assert abs(float(inverted - from_intermediates)) > 1e3  # the trap is real here


def test_the_local_elbo_equals_numpyros_loss_with_a_finite_gradient(near_the_boundary):
    guide, params = near_the_boundary

    def loss_of(elbo):
        return jax.value_and_grad(lambda p: elbo.loss(KEY, p, model, guide, WORDS))(params)

    value, gradient = loss_of(TraceLocalEnum_ELBO())
    expected, expected_gradient = loss_of(Trace_ELBO())
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    for name in ("probs_auto_loc", "probs_auto_scale"):
        assert np.isfinite(gradient[name]).all()
        np.testing.assert_allclose(gradient[name], expected_gradient[name], rtol=1e-9)


def test_rloo_keeps_a_finite_loss_and_gradient(near_the_boundary):
    """RLOO draws its particles under ``vmap`` (other draws than ``Trace_ELBO``'s): with the
    continuous draws held within 1e-3, its loss is ``Trace_ELBO``'s up to the tokens' topics."""
    guide, params = near_the_boundary
    rloo = TraceRLOO_ELBO(num_particles=2)
    value, gradient = jax.value_and_grad(lambda p: rloo.loss(KEY, p, model, guide, WORDS))(params)
    assert all(np.isfinite(g).all() for g in gradient.values())
    reference = Trace_ELBO().loss(KEY, params, model, guide, WORDS)
    assert abs(float(value - reference)) < 50.0
