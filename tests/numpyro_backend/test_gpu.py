"""The same properties on a JAX GPU device; skipped where none is available."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import numpyro_reinmax
from numpyro_reinmax.estimators import RULES
from reference import FAMILY_OPTIONS, family_grad, noise_shape, reinmax_grad


def _gpu():
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:
        return None


GPU = _gpu()
pytestmark = pytest.mark.skipif(GPU is None, reason="no JAX GPU device")


@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_backward_matches_formula_on_gpu(temperature, key):
    keys = jax.random.split(key, 4)
    logits, g, h = (jax.device_put(jax.random.normal(k, (64, 7)), GPU) for k in keys[:3])

    def loss(logits):
        sample, probs = numpyro_reinmax.reinmax(keys[3], logits, temperature)
        return (sample * g).sum() + (probs * h).sum(), sample

    grad, sample = jax.jit(jax.grad(loss, has_aux=True))(logits)
    assert grad.devices() == {GPU}
    expected = reinmax_grad(*(np.asarray(a) for a in (logits, sample, g, h)), temperature)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-9, atol=1e-12)


def test_gpu_draws_follow_the_categorical_law(key):
    probs = jax.device_put(jnp.array([0.5, 0.0, 0.3, 0.2]), GPU)
    logits = jnp.broadcast_to(jnp.log(probs), (50_000, 4))
    sample, _ = jax.jit(numpyro_reinmax.reinmax)(key, logits, 1.0)
    counts = np.asarray(sample.sum(0), dtype=np.float64)
    assert counts[1] == 0
    expected = np.array([0.5, 0.3, 0.2]) * 50_000
    assert scipy.stats.chisquare(counts[[0, 2, 3]], expected).pvalue > 1e-4


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_gpu_dtypes_and_masks(dtype, key):
    logits = jax.device_put(jax.random.normal(key, (128, 6)), GPU).astype(dtype)
    logits = logits.at[:, 2].set(-jnp.inf)
    distribution = numpyro_reinmax.ReinMaxOneHotCategorical(logits=logits, temperature=1.3)
    weights = jax.random.normal(key, (3, 128, 6)).astype(dtype)

    def loss(logits):
        d = numpyro_reinmax.ReinMaxOneHotCategorical(logits=logits, temperature=1.3)
        return (d.sample(key, (3,)) * weights).sum()

    value = distribution.sample(key, (3,))
    assert value.dtype == dtype and value[..., 2].sum() == 0
    grad = jax.grad(loss)(logits)
    assert jnp.isfinite(grad).all() and (grad[:, 2] == 0).all()


@pytest.mark.parametrize("name", list(FAMILY_OPTIONS))
def test_estimator_family_matches_its_formula_on_gpu(name, key):
    """GST, Gumbel-Rao, ReinMax-Rao, ReinMax-CV on the GPU: the formula on the drawn sample and
    the conditional noise (JAX's counter-based keys give the same noise on every device)."""
    options = FAMILY_OPTIONS[name]
    keys = jax.random.split(key, 4)
    logits, g, h = (jax.device_put(jax.random.normal(k, (32, 5)), GPU) for k in keys[:3])

    def loss(logits):
        sample, probs = getattr(numpyro_reinmax, name)(keys[3], logits, 0.8, **options)
        return (sample * g).sum() + (probs * h).sum(), sample

    grad, sample = jax.jit(jax.grad(loss, has_aux=True))(logits)
    assert grad.devices() == {GPU}
    noise, shape = None, noise_shape(RULES[name], options, (32, 5))
    if shape is not None:
        _, noise_key = jax.random.split(keys[3])
        noise = jnp.maximum(jax.random.exponential(noise_key, shape), jnp.finfo(float).tiny)
    arrays = [None if a is None else np.asarray(a) for a in (logits, sample, noise, g, h)]
    expected = family_grad(name, *arrays, 0.8, options)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-9, atol=1e-12)
