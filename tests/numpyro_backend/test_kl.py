"""Analytic KL divergences (NumPyro): values, masks, and that TraceMeanField_ELBO uses them."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions.kl import kl_divergence

import numpyro_reinmax as nr
from numpyro_reinmax.infer import TraceMeanField_ELBO
from reference import BERNOULLI_PRIORS, bernoulli_kl, bernoulli_pair_from_logit, softmax

ONE_HOT = [
    nr.OneHotCategorical,
    nr.ReinMaxOneHotCategorical,
    nr.StraightThroughOneHotCategorical,
    nr.GumbelStraightThroughOneHotCategorical,
]
BERNOULLI = [nr.ReinMaxBernoulli, nr.StraightThroughBernoulli, nr.GumbelStraightThroughBernoulli]


def _numpy_kl(p_logits, q_logits):
    p, q = softmax(p_logits), softmax(q_logits)
    return np.sum(p * (np.log(p) - np.log(q)), -1)


@pytest.mark.parametrize("p_cls", ONE_HOT)
@pytest.mark.parametrize("q_cls", ONE_HOT)
def test_one_hot_kl_values(p_cls, q_cls, key):
    p_logits, q_logits = jax.random.normal(key, (2, 4, 5))
    kl = kl_divergence(p_cls(logits=p_logits), q_cls(logits=q_logits))
    np.testing.assert_allclose(
        kl, _numpy_kl(np.asarray(p_logits), np.asarray(q_logits)), rtol=1e-12
    )


BERNOULLI_PAIRS = [
    (p, q)
    for p in [*BERNOULLI, dist.Bernoulli]
    for q in [*BERNOULLI, dist.Bernoulli]
    if dist.Bernoulli not in (p, q) or p is not q
]


@pytest.mark.parametrize(("p_cls", "q_cls"), BERNOULLI_PAIRS)
def test_bernoulli_kl_values(p_cls, q_cls, key):
    p_logits, q_logits = jax.random.normal(key, (2, 6))
    kl = kl_divergence(p_cls(logits=p_logits), q_cls(logits=q_logits))

    def pair(logits):
        return np.stack([np.zeros(6), np.asarray(logits)], -1)

    np.testing.assert_allclose(kl, _numpy_kl(pair(p_logits), pair(q_logits)), rtol=1e-10)


def test_masked_kl_is_finite_with_finite_gradients():
    q_logits = jnp.array([0.1, 0.2, -0.5])

    def kl(p_logits):
        return kl_divergence(
            nr.ReinMaxOneHotCategorical(logits=p_logits), nr.OneHotCategorical(logits=q_logits)
        )

    p_logits = jnp.array([0.3, -jnp.inf, 1.0])
    p = softmax(np.array([0.3, 1.0]))
    expected = np.sum(p * (np.log(p) - np.asarray(jax.nn.log_softmax(q_logits))[[0, 2]]))
    np.testing.assert_allclose(kl(p_logits), expected, rtol=1e-10)
    assert jnp.isfinite(jax.grad(kl)(p_logits)).all()
    assert (
        kl_divergence(
            nr.ReinMaxOneHotCategorical(logits=jnp.zeros(2)),
            nr.OneHotCategorical(logits=jnp.array([0.0, -jnp.inf])),
        )
        == jnp.inf
    )


PRIOR = jnp.array([[0.5, -1.0, 0.2], [0.0, 0.3, -0.3]])
POSTERIOR = jnp.array([[1.5, 0.0, -2.0], [0.1, 0.2, 0.3]])


@pytest.mark.parametrize("guide_cls", ONE_HOT[1:])
@pytest.mark.parametrize("layout", ["plate", "expand", "to_event"])
def test_trace_mean_field_uses_the_analytic_kl(guide_cls, layout):
    """With no observation, the mean-field loss is exactly the KL for every key: a Monte Carlo
    fallback would vary from key to key."""

    def site(d):
        if layout == "plate":
            with numpyro.plate("rows", 2):
                return numpyro.sample("z", d)
        if layout == "expand":
            with numpyro.plate("copies", 3, dim=-2), numpyro.plate("rows", 2, dim=-1):
                return numpyro.sample("z", d.expand((3, 2)))
        return numpyro.sample("z", d.to_event(1))

    def model():
        site(nr.OneHotCategorical(logits=PRIOR))

    def guide():
        site(guide_cls(logits=POSTERIOR, temperature=1.3))

    expected = _numpy_kl(np.asarray(POSTERIOR), np.asarray(PRIOR)).sum() * (
        3 if layout == "expand" else 1
    )
    elbo = TraceMeanField_ELBO()
    for seed in range(3):
        loss = elbo.loss(jax.random.PRNGKey(seed), {}, model, guide)
        np.testing.assert_allclose(loss, expected, rtol=1e-10)


@pytest.mark.parametrize("guide_cls", BERNOULLI)
def test_trace_mean_field_uses_the_bernoulli_kl(guide_cls):
    prior, posterior = jnp.array([0.2, 0.7]), jnp.array([0.9, 0.4])

    def model():
        with numpyro.plate("rows", 2):
            numpyro.sample("b", dist.Bernoulli(probs=prior))

    def guide():
        with numpyro.plate("rows", 2):
            numpyro.sample("b", guide_cls(probs=posterior))

    q, p = np.asarray(posterior), np.asarray(prior)
    expected = np.sum(q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p)))
    for seed in range(3):
        loss = TraceMeanField_ELBO().loss(jax.random.PRNGKey(seed), {}, model, guide)
        np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize(("parameter", "value", "prior_pair"), BERNOULLI_PRIORS)
@pytest.mark.parametrize("touch_the_other", [False, True])
@pytest.mark.parametrize("guide_cls", BERNOULLI)
def test_bernoulli_kl_does_not_depend_on_lazily_computed_parameters(
    guide_cls, parameter, value, prior_pair, touch_the_other
):
    prior = dist.Bernoulli(**{parameter: jnp.asarray(value)})
    if touch_the_other:
        getattr(prior, "probs" if parameter == "logits" else "logits")
    guide = guide_cls(logits=jnp.asarray(0.3))
    guide_pair = bernoulli_pair_from_logit(0.3)
    forward, backward = kl_divergence(guide, prior), kl_divergence(prior, guide)
    np.testing.assert_allclose(forward, bernoulli_kl(guide_pair, prior_pair), rtol=1e-9)
    np.testing.assert_allclose(backward, bernoulli_kl(prior_pair, guide_pair), rtol=1e-9)
