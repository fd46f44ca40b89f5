"""numpyro_reinmax.infer's ELBOs: no wrong warning for reparameterized discrete guide sites, a
clear error for non-reparameterized ones, and NumPyro's losses otherwise."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import SVI

import numpyro_reinmax as nr
from numpyro_reinmax.infer import Trace_ELBO, TraceMeanField_ELBO

X = jnp.array([-1.0, 0.5, 2.0, 3.5])


def model():
    locs = numpyro.param("locs", jnp.array([-1.0, 0.0, 1.0]))
    with numpyro.plate("data", 4):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(3)))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=X)


def make_guide(cls):
    def guide():
        logits = numpyro.param("q", jnp.zeros((4, 3)))
        with numpyro.plate("data", 4):
            numpyro.sample("z", cls(logits=logits))

    return guide


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_reparameterized_discrete_guides_train_without_the_wrong_warning(elbo, key):
    svi = SVI(model, make_guide(nr.ReinMaxOneHotCategorical), numpyro.optim.Adam(0.05), elbo())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = svi.init(key)
        state, loss = svi.update(state)
    assert jnp.isfinite(loss)


@pytest.mark.parametrize("elbo", [numpyro.infer.Trace_ELBO, numpyro.infer.TraceMeanField_ELBO])
def test_stock_elbos_warn_about_any_discrete_site(elbo, key):
    svi = SVI(model, make_guide(nr.ReinMaxOneHotCategorical), numpyro.optim.Adam(0.05), elbo())
    with pytest.warns(UserWarning, match="discrete latent"):
        svi.init(key)


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
@pytest.mark.parametrize("cls", [nr.OneHotCategorical, dist.Categorical])
def test_non_reparameterized_discrete_guide_sites_are_refused(elbo, cls, key):
    guide = make_guide(cls)
    if cls is dist.Categorical:

        def guide():
            with numpyro.plate("data", 4):
                numpyro.sample("z", dist.Categorical(logits=jnp.zeros((4, 3))))

    with pytest.raises(ValueError, match="zero gradient"):
        elbo().loss(key, {}, model, guide)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (Trace_ELBO, numpyro.infer.Trace_ELBO),
        (TraceMeanField_ELBO, numpyro.infer.TraceMeanField_ELBO),
    ],
)
def test_losses_and_gradients_are_numpyros(ours, theirs, key):
    guide = make_guide(nr.ReinMaxOneHotCategorical)
    params = {"locs": jnp.array([-1.0, 0.0, 1.0]), "q": jnp.arange(12.0).reshape(4, 3) / 6}

    def loss(elbo, params):
        return elbo.loss(key, params, model, guide)

    np.testing.assert_allclose(loss(ours(), params), loss(theirs(), params), rtol=1e-12)
    grads_ours = jax.grad(lambda p: loss(ours(), p))(params)
    grads_theirs = jax.grad(lambda p: loss(theirs(), p))(params)
    for name in params:
        np.testing.assert_allclose(grads_ours[name], grads_theirs[name], rtol=1e-12)
