"""TraceRLOO_ELBO (NumPyro): its gradient is unbiased for the exact ELBO gradient (computed in
closed form by enumerating the discrete site), for a score-function categorical site and a
reparameterized continuous site together; SVI with it; its argument errors."""

import math

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

import numpyro_reinmax as nr
from numpyro_reinmax.infer import TraceRLOO_ELBO
from reference import assert_unbiased

X = jnp.array([-1.0, 0.5, 2.0])
LOCS = jnp.array([-1.0, 0.0, 2.0])
PRIOR = jnp.array([0.2, 0.3, 0.5])


def model():
    shift = numpyro.sample("shift", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", 3):
        z = numpyro.sample("z", nr.OneHotCategorical(probs=PRIOR))
        numpyro.sample("x", dist.Normal(shift + z @ LOCS, 1.0), obs=X)


def guide():
    logits = numpyro.param("logits", jnp.zeros((3, 3)))
    loc, scale = numpyro.param("loc", 0.0), numpyro.param("scale", 1.0)
    numpyro.sample("shift", dist.Normal(loc, scale))
    with numpyro.plate("data", 3):
        numpyro.sample("z", nr.OneHotCategorical(logits=logits))


def exact_elbo(params):
    """E_q[log p(x, z, shift) - log q(z, shift)] in closed form."""
    loc, scale = params["loc"], params["scale"]
    log_q = jax.nn.log_softmax(params["logits"], -1)
    likelihood = dist.Normal(loc + LOCS, 1.0).log_prob(X[:, None]) - scale**2 / 2
    discrete = (jnp.exp(log_q) * (jnp.log(PRIOR) + likelihood - log_q)).sum()
    prior_shift = -(loc**2 + scale**2) / 2 - 0.5 * math.log(2 * math.pi)
    return discrete + prior_shift + 0.5 * jnp.log(2 * math.pi * math.e * scale**2)


def test_gradient_is_unbiased_for_the_exact_elbo_gradient(key):
    params = {
        "logits": jax.random.normal(key, (3, 3)),
        "loc": jnp.asarray(0.3),
        "scale": jnp.asarray(0.8),
    }
    exact = jax.grad(exact_elbo)(params)
    elbo = TraceRLOO_ELBO(num_particles=4)
    replicates = 4000

    def estimate(k):
        return jax.grad(lambda p: -elbo.loss(k, p, model, guide))(params)

    estimates = jax.jit(jax.vmap(estimate))(jax.random.split(key, replicates))
    for name, expected in exact.items():
        assert_unbiased(estimates[name], expected)


def test_svi_reaches_the_exact_optimum_of_a_discrete_guide(key):
    """A guide with only the discrete site: SVI with TraceRLOO_ELBO converges to the posterior
    (the exact ELBO at the end is within 0.05 nats of log p(x))."""

    def discrete_model():
        with numpyro.plate("data", 3):
            z = numpyro.sample("z", nr.OneHotCategorical(probs=PRIOR))
            numpyro.sample("x", dist.Normal(z @ LOCS, 1.0), obs=X)

    def discrete_guide():
        logits = numpyro.param("logits", jnp.zeros((3, 3)))
        with numpyro.plate("data", 3):
            numpyro.sample("z", nr.OneHotCategorical(logits=logits))

    svi = numpyro.infer.SVI(
        discrete_model, discrete_guide, numpyro.optim.Adam(0.05), TraceRLOO_ELBO(num_particles=8)
    )
    result = svi.run(key, 1500, progress_bar=False)
    joint = jnp.log(PRIOR) + dist.Normal(LOCS, 1.0).log_prob(X[:, None])
    log_q = jax.nn.log_softmax(result.params["logits"], -1)
    elbo = (jnp.exp(log_q) * (joint - log_q)).sum()
    assert jax.nn.logsumexp(joint, -1).sum() - elbo < 0.05


@pytest.mark.parametrize("particles", [1, 0])
def test_needs_two_particles(particles):
    with pytest.raises(ValueError, match="num_particles must be >= 2"):
        TraceRLOO_ELBO(num_particles=particles)


def test_refuses_a_discrete_latent_the_guide_forgot(key):
    def no_z_guide():
        numpyro.sample("shift", dist.Normal(numpyro.param("loc", 0.0), 1.0))

    with pytest.raises(ValueError, match="'z' is a discrete latent that the guide does not"):
        TraceRLOO_ELBO(num_particles=2).loss(key, {}, model, no_z_guide)
