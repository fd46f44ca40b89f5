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
from numpyro_reinmax.infer import Trace_ELBO, TraceLocalEnum_ELBO, TraceMeanField_ELBO
from reference import central_differences, masked_mean_field_loss

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


# ------------------------------------------------- model-side masks and forgotten discrete latents

MODEL_MASK = jnp.array([True, False, True])
# the masked-out row's prior is degenerate: its KL to any q that uses category 1 is infinite
PRIOR_PROBS = jnp.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
GUIDE_LOGITS = jnp.array([[1.0, 0.0], [0.3, -0.4], [0.0, 2.0]])


def masked_latent_model(by="handlers"):
    with numpyro.plate("n", 3):
        if by == "handlers":
            with numpyro.handlers.mask(mask=MODEL_MASK):
                numpyro.sample("z", nr.OneHotCategorical(probs=PRIOR_PROBS))
        else:
            numpyro.sample("z", nr.OneHotCategorical(probs=PRIOR_PROBS).mask(MODEL_MASK))


def _expected_masked_loss(logits, guide_mask=(True, True, True)) -> float:
    return masked_mean_field_loss(logits, PRIOR_PROBS, MODEL_MASK.tolist(), guide_mask)


@pytest.mark.parametrize("by", ["handlers", "dist"])
@pytest.mark.parametrize("guide_masked", [False, True])
def test_model_mask_on_a_latent_site_is_honoured(guide_masked, by, key):
    def guide():
        logits = numpyro.param("q", GUIDE_LOGITS)
        with (
            numpyro.plate("n", 3),
            numpyro.handlers.mask(mask=MODEL_MASK if guide_masked else True),
        ):
            numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=logits))

    def loss(params):
        elbo = TraceMeanField_ELBO()
        return elbo.loss(key, params, lambda: masked_latent_model(by), guide)

    value, grad = jax.value_and_grad(loss)({"q": GUIDE_LOGITS})
    guide_mask = MODEL_MASK.tolist() if guide_masked else (True, True, True)
    np.testing.assert_allclose(value, _expected_masked_loss(GUIDE_LOGITS, guide_mask), rtol=1e-12)
    numeric = central_differences(
        lambda logits: _expected_masked_loss(logits, guide_mask), GUIDE_LOGITS
    )
    np.testing.assert_allclose(grad["q"], numeric, atol=1e-7)


def test_model_mask_on_a_continuous_latent_matches_trace_elbo(key):
    """Where both parts have closed forms (Normal KL and entropy) the masked term is the
    expectation of Trace_ELBO's Monte Carlo term, loss and gradients."""
    params = {"loc": jnp.array([0.3, -0.2, 1.0]), "scale": jnp.array([0.7, 1.3, 0.4])}

    def model():
        with numpyro.plate("n", 3), numpyro.handlers.mask(mask=MODEL_MASK):
            numpyro.sample("s", dist.Normal(jnp.zeros(3), 0.5))

    def guide():
        loc, scale = numpyro.param("loc", params["loc"]), numpyro.param("scale", params["scale"])
        with numpyro.plate("n", 3):
            numpyro.sample("s", dist.Normal(loc, scale))

    results = [
        jax.value_and_grad(lambda p, elbo=elbo: elbo.loss(key, p, model, guide))(params)
        for elbo in [TraceMeanField_ELBO(), numpyro.infer.Trace_ELBO(num_particles=400_000)]
    ]
    (ours, our_grads), (reference, reference_grads) = results
    np.testing.assert_allclose(ours, reference, atol=1e-2)
    for name in params:
        np.testing.assert_allclose(our_grads[name], reference_grads[name], atol=1e-2)


def test_svi_with_a_degenerate_masked_prior_stays_finite(key):
    def guide():
        logits = numpyro.param("q", jnp.zeros((3, 2)))
        with numpyro.plate("n", 3):
            numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=logits))

    svi = SVI(masked_latent_model, guide, numpyro.optim.Adam(0.1), TraceMeanField_ELBO())
    result = svi.run(key, 30, progress_bar=False)
    assert np.isfinite(result.losses).all()
    probs = jax.nn.softmax(result.params["q"], -1)
    assert np.isfinite(probs).all()
    # the masked row's guide goes to maximum entropy
    np.testing.assert_allclose(probs[1], [0.5, 0.5], atol=1e-3)


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_a_discrete_model_latent_the_guide_forgot_is_refused(elbo, key):
    def model():
        numpyro.sample("c", nr.OneHotCategorical(logits=jnp.zeros(3)))
        numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(3)))

    def guide():
        numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=jnp.zeros(3)))

    with pytest.raises(ValueError, match="model site 'c' is a discrete latent that the guide"):
        elbo().loss(key, {}, model, guide)


def _diverged_program():
    def model():
        transition = jnp.array([[0.5, 0.5], [jnp.nan, 0.5]])
        z = numpyro.sample("z_0", nr.OneHotCategorical(logits=jnp.zeros(2)))
        numpyro.sample("z_1", nr.OneHotCategorical(probs=z @ transition))

    def guide():
        for t in range(2):
            numpyro.sample(f"z_{t}", nr.ReinMaxOneHotCategorical(logits=jnp.array([-9.0, 9.0])))

    return model, guide


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO, TraceLocalEnum_ELBO])
def test_an_invalid_parameter_names_the_site_and_the_cause(elbo, key):
    model, guide = _diverged_program()
    with pytest.raises(ValueError, match=r"probs\[[0-9, ]+\] = nan") as error, jax.disable_jit():
        elbo().loss(key, {}, model, guide)
    assert "raised in the model after sample site 'z_0'" in str(error.value)
