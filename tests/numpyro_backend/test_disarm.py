"""TraceDisARM_ELBO (NumPyro): its gradient is unbiased for the exact ELBO gradient (enumerating
the 2^3 Bernoulli configurations, the Normal site by quadrature) with a reparameterized Normal site
beside the Bernoulli ones, the pair is antithetic, and non-Bernoulli score-function sites are
refused."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import numpyro_reinmax as nr
from numpyro_reinmax.infer import TraceDisARM_ELBO
from numpyro_reinmax.infer.disarm import _AntitheticBernoulli
from reference import assert_unbiased

X = jnp.array([0.7, -1.2])
W = jnp.array([[1.0, -0.5], [0.8, 1.5], [-1.1, 0.4]])
PRIOR = jnp.array([0.3, 0.6, 0.5])


def model():
    shift = numpyro.sample("shift", dist.Normal(0.0, 1.0))
    with numpyro.plate("bits", 3):
        b = numpyro.sample("b", dist.Bernoulli(PRIOR))
    numpyro.sample("x", dist.Normal(jnp.tanh(shift + b @ W), 0.5).to_event(1), obs=X)


def guide():
    logits = numpyro.param("logits", jnp.zeros(3))
    shift = numpyro.sample(
        "shift", dist.Normal(numpyro.param("loc", 0.0), numpyro.param("scale", 1.0))
    )
    with numpyro.plate("bits", 3):
        numpyro.sample("b", dist.Bernoulli(logits=logits))
    return shift


def exact_elbo(params, nodes=40):
    logits, loc, scale = params["logits"], params["loc"], params["scale"]
    points, weights = np.polynomial.hermite_e.hermegauss(nodes)
    shifts, weights = loc + scale * points, weights / math.sqrt(2 * math.pi)
    total = 0.0
    for config in itertools.product([0.0, 1.0], repeat=3):
        b = jnp.array(config)
        log_q = (b * jax.nn.log_sigmoid(logits) + (1 - b) * jax.nn.log_sigmoid(-logits)).sum()
        log_prior = (b * jnp.log(PRIOR) + (1 - b) * jnp.log1p(-PRIOR)).sum()
        likelihood = dist.Normal(jnp.tanh(shifts[:, None] + b @ W), 0.5).log_prob(X).sum(-1)
        total = total + jnp.exp(log_q) * (log_prior + (weights * likelihood).sum() - log_q)
    prior_shift = -(loc**2 + scale**2) / 2 - 0.5 * math.log(2 * math.pi)
    return total + prior_shift + 0.5 * jnp.log(2 * math.pi * math.e * scale**2)


def test_gradient_is_unbiased_for_the_exact_elbo_gradient(key):
    params = {
        "logits": jnp.array([0.4, -0.8, 1.1]),
        "loc": jnp.asarray(0.2),
        "scale": jnp.asarray(0.7),
    }
    exact = jax.grad(exact_elbo)(params)
    elbo = TraceDisARM_ELBO(num_pairs=2)
    replicates = 4000
    estimates = jax.jit(
        jax.vmap(lambda k: jax.grad(lambda p: -elbo.loss(k, p, model, guide))(params))
    )(jax.random.split(key, replicates))
    for name, expected in exact.items():
        assert_unbiased(estimates[name], expected)


def test_the_pair_is_antithetic_and_shares_the_other_random_choices(key):
    traces = [
        handlers.trace(
            _AntitheticBernoulli(handlers.seed(handlers.substitute(guide, data={}), key), anti)
        ).get_trace()
        for anti in (False, True)
    ]
    assert traces[0]["shift"]["value"] == traces[1]["shift"]["value"]
    # at p = 1/2, u < 1/2 and 1 - u < 1/2 exclude each other: the pair disagrees everywhere
    np.testing.assert_array_equal(traces[0]["b"]["value"] + traces[1]["b"]["value"], np.ones(3))


def test_refuses_a_categorical_score_function_site(key):
    def categorical():
        numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(3)))

    with pytest.raises(ValueError, match=r"Bernoulli sites only\. Use TraceRLOO_ELBO"):
        TraceDisARM_ELBO().loss(key, {}, categorical, categorical)


@pytest.mark.parametrize("pairs", [0, 1.5])
def test_needs_a_positive_number_of_pairs(pairs):
    with pytest.raises(ValueError, match="num_pairs must be an integer >= 1"):
        TraceDisARM_ELBO(num_pairs=pairs)
