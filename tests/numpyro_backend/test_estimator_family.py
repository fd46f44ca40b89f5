"""GST, Gumbel-Rao, ReinMax-Rao and ReinMax-CV (JAX): the backward against the published formula
on the drawn sample and the same conditional noise (NumPy references, log-domain Gumbel draws),
eager and under jit, masks, dtypes, extreme temperatures and logits, second derivatives, vmap, and
their options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_reinmax
from numpyro_reinmax.estimators import RULES
from numpyro_reinmax.families import ESTIMATORS
from numpyro_reinmax.sampling import draw_exponentials
from reference import FAMILY_OPTIONS, family_grad, noise_shape

FAMILY = list(FAMILY_OPTIONS)


def _noise(name, key, shape, dtype, options):
    """The exponentials the forward pass draws from ``key`` (None for GST)."""
    noise = noise_shape(RULES[name], options, shape)
    if noise is None:
        return None
    _, noise_key = jax.random.split(key)
    return np.asarray(draw_exponentials(noise_key, noise, dtype))


def _run(name, key, logits, temperature, options, jit=False):
    """The estimator's gradient, its draw, the noise its forward pass drew, and (g, h)."""
    g = jax.random.normal(jax.random.PRNGKey(11), logits.shape).astype(logits.dtype)
    h = jax.random.normal(jax.random.PRNGKey(12), logits.shape).astype(logits.dtype)

    def loss(x):
        sample, probs = getattr(numpyro_reinmax, name)(key, x, temperature, **options)
        return (sample * g).sum() + (probs * h).sum(), sample

    grad_fn = jax.grad(loss, has_aux=True)
    grad, sample = (jax.jit(grad_fn) if jit else grad_fn)(logits)
    return grad, sample, _noise(name, key, logits.shape, logits.dtype, options), g, h


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("shape", [(5,), (3, 4)])
@pytest.mark.parametrize("name", FAMILY)
def test_backward_matches_formula_on_drawn_sample_and_noise(name, shape, temperature, jit, key):
    logits = 1.5 * jax.random.normal(jax.random.PRNGKey(3), shape)
    options = FAMILY_OPTIONS[name]
    grad, sample, noise, g, h = _run(name, key, logits, temperature, options, jit)
    expected = family_grad(
        name, *map(np.asarray, (logits, sample)), noise, *map(np.asarray, (g, h)), temperature,
        options,
    )  # fmt: skip
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", FAMILY)
def test_defaults_are_the_documented_ones(name, key):
    logits = jax.random.normal(jax.random.PRNGKey(4), (4, 3))
    grad, sample, noise, g, h = _run(name, key, logits, 1.0, {})
    defaults = dict(RULES[name].options)
    if name == "reinmax_cv":
        defaults["cv_temperature"] = 1.0
    expected = family_grad(name, np.asarray(logits), np.asarray(sample), noise, g, h, 1.0, defaults)
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", FAMILY)
def test_masked_categories_never_drawn_and_finite_gradients(name, key):
    logits = jax.random.normal(key, (3000, 6)).at[:, jnp.array([0, 3, 5])].set(-jnp.inf)
    grad, sample, *_ = _run(name, key, logits, 1.2, FAMILY_OPTIONS[name])
    assert sample[:, jnp.array([0, 3, 5])].sum() == 0
    assert (sample[:, jnp.array([1, 2, 4])].sum(0) > 0).all()
    assert jnp.isfinite(grad).all() and (grad[:, jnp.array([0, 3, 5])] == 0).all()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("name", FAMILY)
def test_dtypes(name, dtype, key):
    logits = jax.random.normal(key, (64, 5)).astype(dtype)
    grad, sample, *_ = _run(name, key, logits, 1.3, FAMILY_OPTIONS[name])
    assert sample.dtype == grad.dtype == dtype
    np.testing.assert_array_equal(sample.sum(-1), np.ones(64))
    assert jnp.isfinite(grad.astype(jnp.float32)).all()


@pytest.mark.parametrize("temperature", [1e-39, 1e-300])
@pytest.mark.parametrize("name", FAMILY)
def test_temperature_below_the_float32_range_gives_finite_gradients(name, temperature, key):
    options = dict(FAMILY_OPTIONS[name])
    if "cv_temperature" in options:
        options["cv_temperature"] = temperature
    logits = jax.random.normal(key, (5, 4), jnp.float32)
    with jax.enable_x64(False):
        grad, *_ = _run(name, key, logits, temperature, options, jit=True)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("temperature", [1.0, 1e-3])
@pytest.mark.parametrize("name", FAMILY)
def test_huge_finite_logits(name, temperature, key):
    """Logits of 1e30 in float32, under jit: the same gradient as the float64 formula."""
    logits = jnp.array([[1e30, -1e30, 0.0], [3e38, 1e38, -3e38]], jnp.float32)
    options = FAMILY_OPTIONS[name]
    grad, sample, noise, g, h = _run(name, key, logits, temperature, options, jit=True)
    as64 = [None if x is None else np.asarray(x, np.float64) for x in (logits, sample, noise, g, h)]
    expected = family_grad(name, *as64, temperature, options)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", FAMILY)
def test_grad_of_grad_is_that_of_the_estimated_gradient(name, masked, key):
    """The derivative of the estimate at the fixed draw and noise (the same key), against
    central differences of the estimate; finite with a masked category too."""
    logits = jax.random.normal(jax.random.PRNGKey(6), (3, 4))
    if masked:
        logits = logits.at[:, 1].set(-jnp.inf)
    g, v = jax.random.normal(jax.random.PRNGKey(7), (3, 4)), jax.random.normal(key, (3, 4))
    estimator = getattr(numpyro_reinmax, name)

    def estimated(x):
        return jax.grad(lambda y: (estimator(key, y, 0.8, **FAMILY_OPTIONS[name])[0] * g).sum())(x)

    second = jax.grad(lambda x: (estimated(x) * v).sum())(logits)
    step = 1e-6
    numeric = np.zeros(logits.shape)
    for i in np.ndindex(*logits.shape):
        up = (estimated(logits.at[i].add(step)) * v).sum()
        down = (estimated(logits.at[i].add(-step)) * v).sum()
        numeric[i] = (up - down) / (2 * step)
    np.testing.assert_allclose(second, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", FAMILY)
def test_vmap_over_keys_and_logits(name, key):
    logits = jax.random.normal(key, (7, 4))
    keys = jax.random.split(key, 7)
    estimator = getattr(numpyro_reinmax, name)
    batched = jax.vmap(lambda k, x: estimator(k, x, 1.3, **FAMILY_OPTIONS[name])[0])(keys, logits)
    one_by_one = jnp.stack(
        [
            estimator(k, row, 1.3, **FAMILY_OPTIONS[name])[0]
            for k, row in zip(keys, logits, strict=True)
        ]
    )
    np.testing.assert_array_equal(batched, one_by_one)


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("gumbel_rao", {"samples": 0}, ValueError, "samples must be an integer >= 1"),
        ("gumbel_rao", {"samples": 2.5}, ValueError, "samples must be an integer >= 1"),
        ("gapped_straight_through", {"gap": -1.0}, ValueError, "gap must be >= 0"),
        ("gapped_straight_through", {"gap": float("nan")}, ValueError, "gap must be a finite"),
        ("reinmax_cv", {"eta": float("inf")}, ValueError, "eta must be a finite"),
        ("reinmax_cv", {"cv_temperature": 0.0}, ValueError, "temperature must be a finite"),
    ],
)
def test_bad_options_are_clear_errors(name, options, error, match, key):
    with pytest.raises(error, match=match):
        getattr(numpyro_reinmax, name)(key, jnp.zeros((2, 3)), **options)


def test_an_option_the_rule_does_not_take_is_refused():
    with pytest.raises(TypeError, match="takes no option 'samples'"):
        numpyro_reinmax.ReinMaxOneHotCategorical(logits=jnp.zeros(3), samples=4)
    with pytest.raises(TypeError, match=r"its options: gap"):
        numpyro_reinmax.GappedStraightThroughBernoulli(logits=jnp.zeros(3), eta=1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'samples'"):
        numpyro_reinmax.OneHotCategorical(logits=jnp.zeros(3), samples=4)


@pytest.mark.parametrize("name", FAMILY)
def test_distributions_pass_their_options_to_the_backward(name, key):
    """``sample`` of the one-hot class, of an expanded one and of one passed through ``jit`` as a
    pytree, and the integer class's one-hot draw, equal the functional op with the same options
    and key."""
    one_hot_class, _, integer_class = ESTIMATORS[name]
    logits = jax.random.normal(key, (4,))
    options = FAMILY_OPTIONS[name]
    weights = jax.random.normal(jax.random.PRNGKey(9), (3, 4))

    def through_jit(x):
        d = one_hot_class(logits=jnp.broadcast_to(x, (3, 4)), temperature=0.9, **options)
        return jax.jit(lambda d: d.sample(key))(d)

    makers = (
        lambda x: one_hot_class(logits=x, temperature=0.9, **options).expand((3,)).sample(key),
        through_jit,
        lambda x: integer_class(logits=x, temperature=0.9, **options).one_hot_sample(key, (3,)),
        lambda x: getattr(numpyro_reinmax, name)(key, jnp.broadcast_to(x, (3, 4)), 0.9, **options)[
            0
        ],
    )
    grads = [jax.grad(lambda x, make=make: (make(x) * weights).sum())(logits) for make in makers]
    for grad in grads[:-1]:
        np.testing.assert_allclose(grad, grads[-1], rtol=1e-12)
