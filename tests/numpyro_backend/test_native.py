"""The CPU draw kernel of numpyro_reinmax (an XLA FFI custom call) against the JAX path: the same
draws from the same key, under jit, vmap and grad; the JAX path on other platforms; the switch.

The goodness-of-fit and formula tests elsewhere run on the kernel (it is on by default)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_reinmax
from numpyro_reinmax import native, sampling

RULE_NAMES = list(numpyro_reinmax.estimators.RULES)


@pytest.fixture(autouse=True)
def _kernel_as_configured():
    """The kernels as the environment says after each test. Both paths draw the Gumbel rules'
    noise with ``jax.random``, so the comparisons below pin that a key gives the same draws,
    noise and gradients whichever path runs."""
    yield
    native.set_native_kernels(None)


def _draw(key, probs, use_native):
    native.set_native_kernels(use_native)
    return jax.jit(sampling.draw_index)(key, probs)


def _lowered(key, probs, platforms=None):
    traced = jax.jit(sampling.draw_index).trace(key, probs)
    lowered = traced.lower() if platforms is None else traced.lower(lowering_platforms=platforms)
    return lowered.as_text()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_kernel_draws_what_the_jax_path_draws(key, dtype):
    """float64 sums on both paths (x64 is on in these tests), the same uniforms from the key."""
    probs = jax.nn.softmax(jax.random.normal(key, (3000, 20)) * 2, -1).astype(dtype)
    on, off = _draw(key, probs, True), _draw(key, probs, False)
    assert on.dtype == off.dtype == jnp.int64
    np.testing.assert_array_equal(on, off)


def test_masked_categories_are_never_drawn(key):
    probs = jnp.tile(jnp.array([[0.0, 0.3, 0.0, 0.7, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]]), (500, 4))
    index = _draw(key, probs.astype(jnp.float32), True)
    assert (jnp.take_along_axis(probs, index[:, None], -1) > 0).all()


def test_without_x64_the_index_is_int32_and_the_draws_are_exact(key):
    with jax.enable_x64(False):
        probs = jnp.array([[0.2, 0.0] + [0.0] * 15 + [0.8]] * 20000, jnp.float32)
        index = _draw(key, probs, True)
        assert index.dtype == jnp.int32
        counts = np.bincount(np.asarray(index), minlength=18)
    assert counts.sum() == counts[0] + counts[17]
    assert abs(counts[17] / 20000 - 0.8) < 4 * np.sqrt(0.8 * 0.2 / 20000)


def test_vmap_and_jit_batch_as_rows(key):
    native.set_native_kernels(True)
    probs = jax.nn.softmax(jax.random.normal(key, (4, 6, 20)), -1)
    keys = jax.random.split(key, 4)
    batched = jax.jit(jax.vmap(sampling.draw_index))(keys, probs)
    one_by_one = jnp.stack([sampling.draw_index(k, p) for k, p in zip(keys, probs, strict=True)])
    np.testing.assert_array_equal(batched, one_by_one)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_estimators_and_gradients_agree_on_both_paths(key, name):
    logits = jax.random.normal(key, (7, 20)) * 2
    upstream = jax.random.normal(jax.random.PRNGKey(1), (7, 20))

    def loss(x):
        sample, probs = getattr(numpyro_reinmax, name)(key, x, 1.3)
        return (sample * upstream).sum() + (probs * upstream**2).sum()

    results = []
    for use_native in (True, False):
        native.set_native_kernels(use_native)
        results.append(jax.jit(jax.value_and_grad(loss))(logits))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


FAMILY_OPTIONS = {
    "gumbel_rao": {"samples": 3},
    "reinmax_rao": {"samples": 2},
    "gapped_straight_through": {"gap": 0.7},
}


def _backward_on_both_paths(key, name, logits, temperatures, second=False):
    """The gradient (``second``: the gradient of a projection of the gradient) of rule ``name``
    at each of ``temperatures`` (traced, under ``vmap``: one set of kernel weights per
    temperature), with the backward on the kernel and on the JAX path; the same draw and noise."""
    upstream = jax.random.normal(jax.random.PRNGKey(1), logits.shape).astype(logits.dtype)
    options = FAMILY_OPTIONS.get(name, {})

    def loss(x, temperature):
        sample, probs = getattr(numpyro_reinmax, name)(key, x, temperature, **options)
        return (sample * upstream).sum() + (probs * upstream[..., ::-1]).sum()

    def estimate(x, temperature):
        grad = jax.grad(loss)(x, temperature)
        if not second:
            return grad
        return jax.grad(lambda y: (jax.grad(loss)(y, temperature) * upstream).sum())(x)

    results = []
    for use_native in (True, False):
        native.set_native_kernels(use_native)
        batched = jax.jit(jax.vmap(estimate, in_axes=(None, 0)))
        results.append(batched(logits, jnp.asarray(temperatures, logits.dtype)))
    return results


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", RULE_NAMES)
def test_the_backward_kernel_gives_the_jax_paths_gradient(key, name, dtype):
    """Masked categories, temperatures from 1e-30 to 1e3 batched by vmap (each its own kernel
    weights), every rule: the same gradient to rounding."""
    logits = (jax.random.normal(key, (6, 40)) * 2).at[:, [0, 7]].set(-jnp.inf).astype(dtype)
    temperatures = [1e-30, 0.3, 1.0, 1.7, 1e3]
    on, off = _backward_on_both_paths(key, name, logits, temperatures)
    assert jnp.isfinite(on).all() and (on[..., [0, 7]] == 0).all()
    tolerance = 2e-5 if dtype == jnp.float32 else 1e-12
    scale = jnp.abs(off).max(axis=(1, 2), keepdims=True) + 1.0
    np.testing.assert_allclose(on / scale, off / scale, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_grad_of_grad_through_the_backward_kernel_is_the_jax_paths(key, name):
    """The kernel's custom JVP is the JAX path's: second derivatives agree (masked too)."""
    logits = (jax.random.normal(key, (3, 20)) * 2).at[:, 3].set(-jnp.inf)
    on, off = _backward_on_both_paths(key, name, logits, [0.6, 1.0], second=True)
    assert jnp.isfinite(on).all()
    np.testing.assert_allclose(on, off, rtol=1e-10, atol=1e-10)


def test_the_backward_kernel_is_a_cpu_custom_call(key):
    native.set_native_kernels(True)

    def grad(x):
        return jax.grad(lambda y: numpyro_reinmax.reinmax(key, y, 1.3)[0][:, 0].sum())(x)

    traced = jax.jit(grad).trace(jnp.zeros((4, 16)))
    assert native.COMBINE_TARGET in traced.lower().as_text()
    assert native.COMBINE_TARGET not in traced.lower(lowering_platforms=("cuda",)).as_text()
    few = jax.jit(grad).trace(jnp.zeros((4, 15)))
    assert native.COMBINE_TARGET not in few.lower().as_text()  # few categories: JAX's
    many_rows = jax.jit(grad).trace(jnp.zeros((native.MIN_SHORT_ROW_ENTRIES // 2, 2)))
    assert native.COMBINE_TARGET in many_rows.lower().as_text()  # ... unless the array is large


@pytest.mark.parametrize("categories", [2, 3, 7])
@pytest.mark.parametrize("name", RULE_NAMES)
def test_short_rows_in_large_arrays_take_the_kernels_with_the_jax_paths_results(
    key, name, categories
):
    """Rows of fewer than 16 categories in an array of MIN_SHORT_ROW_ENTRIES entries or more: the
    kernels' draw and backward (masked categories included), the same draws and gradients as the
    JAX path."""
    rows = -(-native.MIN_SHORT_ROW_ENTRIES // categories)
    logits = jax.random.normal(key, (rows, categories)) * 2
    logits = logits.at[::3, 0].set(-jnp.inf)
    probs = jax.nn.softmax(logits, -1)
    np.testing.assert_array_equal(_draw(key, probs, True), _draw(key, probs, False))
    native.set_native_kernels(True)
    assert native.DRAW_TARGET in _lowered(key, probs)
    on, off = _backward_on_both_paths(key, name, logits, [0.6, 1.0])
    assert jnp.isfinite(on).all()
    scale = jnp.abs(off).max() + 1.0
    np.testing.assert_allclose(on / scale, off / scale, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(0, 4), (3, 1), (2, 0, 5)])
@pytest.mark.parametrize("name", RULE_NAMES)
def test_empty_batches_and_a_single_category(key, name, shape):
    native.set_native_kernels(True)

    def loss(x):
        sample, _ = getattr(numpyro_reinmax, name)(key, x, 1.3)
        return sample.sum(), sample

    grad, sample = jax.jit(jax.grad(loss, has_aux=True))(jnp.zeros(shape))
    assert sample.shape == grad.shape == shape
    assert (sample.sum(-1) == 1).all() and (grad == 0).all()


def test_the_kernel_is_a_cpu_custom_call_and_other_platforms_keep_the_jax_path(key):
    native.set_native_kernels(True)
    probs = jnp.ones((4, 16)) / 16
    assert native.DRAW_TARGET in _lowered(key, probs)
    assert native.DRAW_TARGET not in _lowered(key, probs, ("cuda",))
    assert native.DRAW_TARGET not in _lowered(key, probs[:, :15])  # few categories: JAX's
    rows = native.MIN_SHORT_ROW_ENTRIES // 2  # unless the array is large
    assert native.DRAW_TARGET in _lowered(key, jnp.ones((rows, 2)) / 2)
    assert native.DRAW_TARGET not in _lowered(key, jnp.ones((rows - 1, 2)) / 2)


def test_calls_split_over_xlas_threads_give_the_values_of_one_call(key):
    """From 32768 entries up (REINMAX_PARALLEL_MIN) the handlers split their rows over XLA's
    intra-op threads: the backward on 64 x 1024 logits is the JAX path's (the draw is compared
    at 3000 x 20 above)."""
    logits = jax.random.normal(key, (64, 1024)) * 2
    for name in ("reinmax", "gumbel_rao"):
        on, off = _backward_on_both_paths(key, name, logits, [1.0, 1.7])
        scale = jnp.abs(off).max() + 1.0
        np.testing.assert_allclose(on / scale, off / scale, rtol=1e-12, atol=1e-12)


def test_off_by_environment(monkeypatch, key):
    monkeypatch.setenv("REINMAX_NATIVE", "0")
    native.set_native_kernels(None)
    assert native.native_kernels_status().startswith("off")
    assert native.DRAW_TARGET not in _lowered(key, jnp.ones((4, 16)) / 16)


def test_other_dtypes_take_the_jax_path(key):
    native.set_native_kernels(True)
    probs = jnp.array([[0.25, 0.75] * 8] * 4, jnp.bfloat16)
    assert native.DRAW_TARGET not in _lowered(key, probs)
    assert sampling.draw_index(key, probs).shape == (4,)


def test_a_failed_build_warns_and_falls_back(monkeypatch, tmp_path, key):
    monkeypatch.setenv("REINMAX_NATIVE", "auto")
    monkeypatch.setenv("REINMAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setattr(native.KERNELS, "library", None)
    native.set_native_kernels(None)
    with pytest.warns(RuntimeWarning, match="numpyro_reinmax could not build"):
        index = sampling.draw_index(key, jnp.array([[0.0] * 16 + [1.0]]))
    assert index.tolist() == [16]
    assert native.native_kernels_status().startswith("off: the build failed")


@pytest.mark.parametrize("value", ["off", 0, 1, "1"])
def test_the_switch_takes_only_true_false_or_none(value):
    with pytest.raises(TypeError, match="True, False or None"):
        numpyro_reinmax.set_native_kernels(value)
