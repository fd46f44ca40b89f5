"""reinmax-compare's gumbel-softmax baseline: every latent one-hot and 0/1 site relaxed to its
Concrete distribution on the same logits, in model and guide alike, shapes kept; the density is
the published one (Maddison et al., 2017, eq. 1 and its binary case); integer sites are refused."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch
from numpyro import handlers
from pyro import poutine

import numpyro_reinmax as nr
import pyro_reinmax as pr
from reinmax_examples import relaxation_numpyro, relaxation_pyro

TEMPERATURE = 0.7
LOGITS = np.array([[0.3, -1.2, 2.0], [-0.5, 0.1, 0.4]])
BERNOULLI_LOGITS = np.array([[1.5, -0.3], [0.0, -2.0]])


def concrete_log_density(y, logits, temperature):
    """Maddison et al. (2017), eq. (1): the Concrete density of ``y`` in the simplex."""
    n = y.shape[-1]
    log_pi = logits - np.logaddexp.reduce(logits, -1, keepdims=True)
    weighted = np.logaddexp.reduce(log_pi - temperature * np.log(y), -1)
    return (
        math.lgamma(n)
        + (n - 1) * np.log(temperature)
        + (log_pi - (temperature + 1) * np.log(y)).sum(-1)
        - n * weighted
    )


def binary_concrete_log_density(y, logits, temperature):
    """The binary case: ``(y, 1 - y)`` under the two-category Concrete on ``(logits, 0)``."""
    stacked = np.stack([y, 1 - y], -1)
    return concrete_log_density(stacked, np.stack([logits, np.zeros_like(logits)], -1), temperature)


def pyro_model():
    with pyro.plate("data", 2):
        z = pyro.sample("z", pr.OneHotCategorical(logits=torch.tensor(LOGITS)))
        b = pyro.sample("b", pdist.Bernoulli(logits=torch.tensor(BERNOULLI_LOGITS)).to_event(1))
        pyro.sample("x", pdist.Normal(z.sum(-1) + b.sum(-1), 1.0), obs=torch.zeros(2))


def numpyro_model():
    with numpyro.plate("data", 2):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.asarray(LOGITS)))
        b = numpyro.sample("b", ndist.Bernoulli(logits=jnp.asarray(BERNOULLI_LOGITS)).to_event(1))
        numpyro.sample("x", ndist.Normal(z.sum(-1) + b.sum(-1), 1.0), obs=jnp.zeros(2))


def _relaxed_pyro_trace():
    pyro.set_rng_seed(0)
    relaxed = relaxation_pyro.RelaxedSites(TEMPERATURE)(pyro_model)
    trace = poutine.trace(relaxed).get_trace()
    trace.compute_log_prob()
    return {name: trace.nodes[name] for name in ("z", "b", "x")}


def _relaxed_numpyro_trace():
    relaxed = relaxation_numpyro.RelaxedSites(numpyro_model, temperature=TEMPERATURE)
    return handlers.trace(handlers.seed(relaxed, jax.random.PRNGKey(0))).get_trace()


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_relaxed_sites_keep_shapes_and_score_the_published_density(backend):
    trace = _relaxed_pyro_trace() if backend == "pyro" else _relaxed_numpyro_trace()
    z, b = trace["z"], trace["b"]
    assert tuple(z["fn"].batch_shape) == (2,) and tuple(z["fn"].event_shape) == (3,)
    assert tuple(b["fn"].batch_shape) == (2,) and tuple(b["fn"].event_shape) == (2,)
    z_value, b_value = np.asarray(z["value"]), np.asarray(b["value"])
    rtol = 1e-9 if z_value.dtype == np.float64 else 1e-5  # NumPyro without x64: float32
    np.testing.assert_allclose(z_value.sum(-1), 1.0, rtol=rtol)
    assert ((z_value > 0) & (z_value < 1)).all() and ((b_value > 0) & (b_value < 1)).all()
    expected_z = concrete_log_density(z_value, LOGITS, TEMPERATURE)
    expected_b = binary_concrete_log_density(b_value, BERNOULLI_LOGITS, TEMPERATURE).sum(-1)
    np.testing.assert_allclose(np.asarray(z["fn"].log_prob(z["value"])), expected_z, rtol=rtol)
    np.testing.assert_allclose(np.asarray(b["fn"].log_prob(b["value"])), expected_b, rtol=rtol)
    assert not isinstance(trace["x"]["fn"], pdist.RelaxedOneHotCategorical)  # observed: kept


def test_integer_sites_are_refused_with_what_to_do():
    def pyro_integer():
        pyro.sample("k", pdist.Categorical(logits=torch.zeros(3)))

    def numpyro_integer():
        numpyro.sample("k", ndist.Categorical(logits=jnp.zeros(3)))

    with pytest.raises(ValueError, match=r"integer Categorical.*-local methods"):
        poutine.trace(relaxation_pyro.RelaxedSites(1.0)(pyro_integer)).get_trace()
    relaxed = relaxation_numpyro.RelaxedSites(numpyro_integer, temperature=1.0)
    with pytest.raises(ValueError, match=r"integer Categorical.*-local methods"):
        handlers.seed(relaxed, 0)()


def test_the_relaxed_elbo_agrees_between_backends():
    """The same model and guide logits: the Concrete ELBO, averaged over many draws, is the same
    number in both backends (their draws differ, their expectation does not)."""

    def pyro_guide():
        with pyro.plate("data", 2):
            pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=torch.tensor(LOGITS) * 0.5))
            logits = torch.tensor(BERNOULLI_LOGITS) * 0.5
            pyro.sample("b", pr.ReinMaxBernoulli(logits=logits).to_event(1))

    def numpyro_guide():
        with numpyro.plate("data", 2):
            numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=jnp.asarray(LOGITS) * 0.5))
            logits = jnp.asarray(BERNOULLI_LOGITS) * 0.5
            numpyro.sample("b", nr.ReinMaxBernoulli(logits=logits).to_event(1))

    draws = 4000
    pyro.set_rng_seed(0)
    pyro_elbo = relaxation_pyro.GumbelSoftmax_ELBO(TEMPERATURE, num_particles=draws)
    pyro_value = -pyro_elbo.loss(pyro_model, pyro_guide)
    numpyro_elbo = relaxation_numpyro.GumbelSoftmax_ELBO(TEMPERATURE, num_particles=draws)
    key = jax.random.PRNGKey(0)
    numpyro_value = -float(numpyro_elbo.loss(key, {}, numpyro_model, numpyro_guide))
    # the difference of two 4,000-draw means has a standard error of about 0.03
    assert abs(pyro_value - numpyro_value) < 0.12, (pyro_value, numpyro_value)
