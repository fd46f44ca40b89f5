"""The functional estimators (JAX): backward against the published formulas on the drawn sample,
eager and under jit; vmap; grad of grad; masks; dtypes; argument errors."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numpyro_reinmax
from numpyro_reinmax.sampling import draw_exponentials
from reference import (
    gumbel_given_argmax,
    gumbel_straight_through_grad,
    reinmax_grad,
    softmax,
    straight_through_grad,
)

FORMULAS = {
    numpyro_reinmax.reinmax: reinmax_grad,
    numpyro_reinmax.straight_through: straight_through_grad,
}


def _loss_and_grad(estimator, key, logits, temperature, g, h, jit):
    def loss(logits):
        sample, probs = estimator(key, logits, temperature)
        return (sample * g).sum() + (probs * h).sum(), (sample, probs)

    grad_fn = jax.grad(loss, has_aux=True)
    if jit:
        grad_fn = jax.jit(grad_fn)
    return grad_fn(logits)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 6)])
@pytest.mark.parametrize("temperature", [1.0, 1.7])
@pytest.mark.parametrize("use_probs", [False, True])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("estimator", list(FORMULAS), ids=lambda e: e.__name__)
def test_backward_matches_formula_on_drawn_sample(
    estimator, shape, temperature, use_probs, jit, key
):
    keys = jax.random.split(key, 4)
    logits = 1.5 * jax.random.normal(keys[0], shape)
    g = jax.random.normal(keys[1], shape)
    h = jax.random.normal(keys[2], shape) if use_probs else jnp.zeros(shape)
    grad, (sample, probs) = _loss_and_grad(estimator, keys[3], logits, temperature, g, h, jit)
    expected = FORMULAS[estimator](*map(np.asarray, (logits, sample, g, h)), temperature)
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(probs, jax.nn.softmax(logits, -1), rtol=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_gumbel_straight_through_matches_formula(temperature, jit, key):
    keys = jax.random.split(key, 4)
    logits = 1.5 * jax.random.normal(keys[0], (6, 5))
    g, h = jax.random.normal(keys[1], (6, 5)), jax.random.normal(keys[2], (6, 5))
    grad, (sample, _) = _loss_and_grad(
        numpyro_reinmax.gumbel_straight_through, keys[3], logits, temperature, g, h, jit
    )
    _, noise_key = jax.random.split(keys[3])  # the same key: the same exponentials
    exponentials = draw_exponentials(noise_key, logits.shape, logits.dtype)
    index = np.asarray(sample).argmax(-1)
    perturbed = gumbel_given_argmax(logits, index, exponentials)
    np.testing.assert_array_equal(perturbed.argmax(-1), index)
    soft = softmax(perturbed / temperature)
    expected = gumbel_straight_through_grad(*map(np.asarray, (soft, logits, g, h)), temperature)
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 1.4])
def test_grad_of_grad_is_that_of_the_estimated_gradient(temperature, key):
    keys = jax.random.split(key, 4)
    logits = jax.random.normal(keys[0], (3, 5))
    g, v = jax.random.normal(keys[1], (3, 5)), jax.random.normal(keys[2], (3, 5))
    sample, _ = numpyro_reinmax.reinmax(keys[3], logits, temperature)

    def estimated_gradient(logits):
        return jax.grad(lambda x: (numpyro_reinmax.reinmax(keys[3], x, temperature)[0] * g).sum())(
            logits
        )

    def formula(logits):  # the ReinMax formula with plain jax ops, the draw held fixed
        def jvp(p, w):
            return p * (w - (p * w).sum(-1, keepdims=True))

        pi0 = jax.nn.softmax(logits, -1)
        pi1 = (jax.nn.softmax(logits / temperature, -1) + sample) / 2
        return 2 * jvp(pi1, g) - 0.5 * jvp(pi0, g)

    np.testing.assert_allclose(estimated_gradient(logits), formula(logits), rtol=1e-12, atol=1e-12)
    second = jax.grad(lambda x: (estimated_gradient(x) * v).sum())(logits)
    expected = jax.grad(lambda x: (formula(x) * v).sum())(logits)
    np.testing.assert_allclose(second, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("estimator", list(FORMULAS) + [numpyro_reinmax.gumbel_straight_through])
def test_vmap_over_keys_and_logits(estimator, key):
    logits = jax.random.normal(key, (7, 4))
    keys = jax.random.split(key, 7)
    batched = jax.vmap(lambda k, x: estimator(k, x, 1.3)[0])(keys, logits)
    one_by_one = jnp.stack([estimator(k, row, 1.3)[0] for k, row in zip(keys, logits, strict=True)])
    np.testing.assert_array_equal(batched, one_by_one)
    grads = jax.vmap(jax.grad(lambda x, k: (estimator(k, x, 1.3)[0] * jnp.arange(4.0)).sum()))(
        logits, keys
    )
    assert grads.shape == (7, 4) and jnp.isfinite(grads).all()


@pytest.mark.parametrize("estimator", list(FORMULAS) + [numpyro_reinmax.gumbel_straight_through])
@pytest.mark.parametrize("temperature", [1.0, 1.5])
def test_masked_categories_never_drawn_and_finite_gradients(estimator, temperature, key):
    logits = jax.random.normal(key, (4000, 6)).at[:, jnp.array([0, 3, 5])].set(-jnp.inf)
    weights = jax.random.normal(jax.random.PRNGKey(1), (6,))
    sample, _ = estimator(key, logits, temperature)
    assert sample[:, jnp.array([0, 3, 5])].sum() == 0
    assert (sample[:, jnp.array([1, 2, 4])].sum(0) > 0).all()
    grad = jax.grad(lambda x: (estimator(key, x, temperature)[0] * weights).sum())(logits)
    assert jnp.isfinite(grad).all() and (grad[:, jnp.array([0, 3, 5])] == 0).all()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64])
@pytest.mark.parametrize("estimator", list(FORMULAS) + [numpyro_reinmax.gumbel_straight_through])
def test_dtypes(estimator, dtype, key):
    logits = jax.random.normal(key, (64, 5)).astype(dtype)
    sample, probs = estimator(key, logits, 1.3)
    assert sample.dtype == probs.dtype == dtype
    np.testing.assert_array_equal(sample.sum(-1), np.ones(64))
    grad = jax.grad(lambda x: (estimator(key, x, 1.3)[0] * jnp.arange(5.0, dtype=dtype)).sum())(
        logits
    )
    assert grad.dtype == dtype and jnp.isfinite(grad.astype(jnp.float32)).all()


def test_traced_temperature_under_jit(key):
    """A temperature passed into a jitted function (annealing) is traced, not baked in."""
    logits = jax.random.normal(key, (3, 4))

    @jax.jit
    def grad_at(temperature):
        return jax.grad(
            lambda x: (numpyro_reinmax.reinmax(key, x, temperature)[0] * jnp.arange(4.0)).sum()
        )(logits)

    np.testing.assert_allclose(
        grad_at(1.0),
        jax.grad(lambda x: (numpyro_reinmax.reinmax(key, x, 1.0)[0] * jnp.arange(4.0)).sum())(
            logits
        ),
        rtol=1e-12,
    )
    assert not np.allclose(grad_at(1.0), grad_at(2.0))


def test_no_gradient_reaches_the_temperature(key):
    logits = jax.random.normal(key, (3, 4))
    grad = jax.grad(lambda t: (numpyro_reinmax.reinmax(key, logits, t)[0] * jnp.arange(4.0)).sum())(
        1.5
    )
    assert grad == 0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), jnp.ones(2)])
def test_bad_temperature_is_a_clear_error(bad, key):
    with pytest.raises(ValueError, match="temperature"):
        numpyro_reinmax.reinmax(key, jnp.zeros(3), bad)


def test_temperature_type_error(key):
    with pytest.raises(TypeError, match="temperature"):
        numpyro_reinmax.reinmax(key, jnp.zeros(3), "1.0")


@pytest.mark.parametrize("values", [[0.0, jnp.nan], [0.0, jnp.inf], [-jnp.inf, -jnp.inf]])
@pytest.mark.parametrize("estimator", list(FORMULAS) + [numpyro_reinmax.gumbel_straight_through])
def test_bad_logits_are_a_clear_error_when_validating(estimator, values, key):
    with pytest.raises(ValueError, match="logits"):
        estimator(key, jnp.array([[0.0, 1.0], values]))


def test_draw_index_keeps_u_below_the_total(monkeypatch, key):
    """A uniform that rounds up to the row total must not leak mass to a masked last category."""
    from numpyro_reinmax import sampling

    probs = jnp.array([[0.25, 0.75, 0.0], [0.5, 0.5, 0.0]])
    for u in [1.0, float(np.nextafter(1.0, 0.0))]:
        monkeypatch.setattr(
            sampling.jax.random, "uniform", lambda key, shape, dtype, u=u: jnp.full(shape, u, dtype)
        )
        np.testing.assert_array_equal(sampling.draw_index(key, probs), [1, 1])


@settings(max_examples=40, deadline=None)
@given(
    logits=hnp.arrays(np.float64, (3, 4), elements=st.floats(-10, 10)),
    log10_temperature=st.floats(-290, 1),
    estimator=st.sampled_from(list(FORMULAS)),
)
def test_any_positive_temperature_gives_the_formula(logits, log10_temperature, estimator):
    """A tiny temperature is the one-hot limit of softmax(logits / tau), not NaN."""
    temperature = 10.0**log10_temperature
    g, h = np.linspace(-1, 1, 12).reshape(3, 4), np.linspace(2, 0, 12).reshape(3, 4)
    grad, (sample, _) = _loss_and_grad(
        estimator, jax.random.PRNGKey(0), jnp.asarray(logits), temperature, g, h, True
    )
    assert np.isfinite(grad).all()
    expected = FORMULAS[estimator](logits, np.asarray(sample), g, h, temperature)
    scale = max(1.0, float(np.abs(expected).max()))  # entries cancel at the scale of the largest
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.parametrize("temperature", [1e-39, 1e-300])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("estimator", list(FORMULAS) + [numpyro_reinmax.gumbel_straight_through])
def test_float32_temperature_below_the_dtype_range(estimator, temperature, jit, key):
    """1 / tau overflows float32 (with x64 off, tau itself rounds to 0): the gradient is still
    finite, the float64 formula's where known."""
    logits = jax.random.normal(key, (5, 4), jnp.float32)
    g, h = jnp.linspace(-1, 1, 20).reshape(5, 4), jnp.linspace(2, 0, 20).reshape(5, 4)
    with jax.enable_x64(False):
        grad, (sample, _) = _loss_and_grad(
            estimator, key, logits, temperature, g.astype(jnp.float32), h.astype(jnp.float32), jit
        )
    assert np.isfinite(grad).all()
    if estimator in FORMULAS:
        logits = np.asarray(logits, np.float64)
        expected = FORMULAS[estimator](logits, np.asarray(sample), g, h, temperature)
        np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 1.3, 1e-3])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("estimator", list(FORMULAS), ids=lambda e: e.__name__)
def test_huge_finite_logits(estimator, temperature, jit, key):
    """softmax(logits / tau) under jit is NaN for logits of 1e20 and more; ours is not."""
    logits = jnp.array([[1e30, -1e30, 0.0], [3e38, 1e38, -3e38]], jnp.float32)
    g, h = jnp.ones((2, 3), jnp.float32).at[:, 0].set(-2.0), jnp.zeros((2, 3), jnp.float32)
    grad, (sample, _) = _loss_and_grad(estimator, key, logits, temperature, g, h, jit)
    expected = FORMULAS[estimator](
        np.asarray(logits, np.float64), np.asarray(sample), g, h, temperature
    )
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("logits", "error"),
    [
        (jnp.zeros((3, 0)), "last axis of categories"),
        (jnp.asarray(1.0), "last axis of categories"),
        (jnp.asarray([1, 2]), "floating-point"),
    ],
    ids=["no-categories", "0-d", "integer"],
)
@pytest.mark.parametrize("estimator", list(FORMULAS) + [numpyro_reinmax.gumbel_straight_through])
def test_logits_without_categories_or_float_dtype_are_refused(estimator, logits, error, key):
    with pytest.raises((ValueError, TypeError), match=error):
        estimator(key, logits)
