"""Cross-backend parity: for the same logits and the same one-hot draw, pyro_reinmax and
numpyro_reinmax give the same gradients (float64), for ReinMax and each baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import numpyro_reinmax
import pyro_reinmax
from pyro_reinmax.sampling import draw_exponentials
from reference import noise_shape

jax.config.update("jax_enable_x64", True)

ESTIMATORS = list(pyro_reinmax.estimators.RULES)
OPTIONS = {"gumbel_rao": {"samples": 3}, "reinmax_rao": {"samples": 2}, "reinmax_cv": {"eta": 0.5}}


def _torch_side(name, logits, temperature, g, h, seed):
    leaf = torch.tensor(logits, requires_grad=True)
    torch.manual_seed(seed)
    sample, probs = getattr(pyro_reinmax, name)(leaf, temperature, **OPTIONS.get(name, {}))
    ((sample * torch.tensor(g)).sum() + (probs * torch.tensor(h)).sum()).backward()
    torch.manual_seed(seed)  # the same stream: one uniform per row, then the noise's exponentials
    torch.rand(leaf.shape[:-1] + (1,), dtype=torch.float64)
    shape = noise_shape(pyro_reinmax.estimators.RULES[name], OPTIONS.get(name, {}), leaf.shape)
    exponentials = (
        None if shape is None else draw_exponentials(torch.empty(shape, dtype=leaf.dtype)).numpy()
    )
    return sample.detach().numpy(), exponentials, leaf.grad.numpy()


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("temperature", [1.0, 1.7])
@pytest.mark.parametrize("shape", [(6,), (4, 5)])
def test_same_draw_same_gradient(monkeypatch, name, temperature, shape):
    rng = np.random.default_rng(0)
    logits, g, h = (rng.normal(size=shape) for _ in range(3))
    sample, exponentials, torch_grad = _torch_side(name, logits, temperature, g, h, seed=1)
    index = jnp.asarray(sample.argmax(-1))
    # hand the JAX estimator the same draw
    monkeypatch.setattr(numpyro_reinmax.estimators, "draw_index", lambda key, probs: index)
    monkeypatch.setattr(
        numpyro_reinmax.estimators,
        "draw_exponentials",
        lambda key, shape, dtype: jnp.asarray(exponentials, dtype),
    )

    def loss(logits):
        jax_sample, probs = getattr(numpyro_reinmax, name)(
            jax.random.PRNGKey(0), logits, temperature, **OPTIONS.get(name, {})
        )
        return (jax_sample * g).sum() + (probs * h).sum(), jax_sample

    with jax.disable_jit():
        jax_grad, jax_sample = jax.grad(loss, has_aux=True)(jnp.asarray(logits))
    np.testing.assert_array_equal(jax_sample, sample)
    np.testing.assert_allclose(jax_grad, torch_grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cls", ["ReinMaxBernoulli", "StraightThroughBernoulli"])
@pytest.mark.parametrize("temperature", [1.0, 1.4])
def test_bernoulli_same_draw_same_gradient(monkeypatch, cls, temperature):
    logits = np.array([-1.5, 0.2, 2.0, 0.7])
    torch.manual_seed(3)
    leaf = torch.tensor(logits, requires_grad=True)
    value = getattr(pyro_reinmax, cls)(logits=leaf, temperature=temperature).rsample()
    (value * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
    index = jnp.asarray(value.detach().numpy().astype(int))
    monkeypatch.setattr(numpyro_reinmax.estimators, "draw_index", lambda key, probs: index)

    def loss(logits):
        d = getattr(numpyro_reinmax, cls)(logits=logits, temperature=temperature)
        return (d.sample(jax.random.PRNGKey(0)) * jnp.arange(1.0, 5.0)).sum()

    with jax.disable_jit():
        np.testing.assert_allclose(
            jax.grad(loss)(jnp.asarray(logits)), leaf.grad.numpy(), rtol=1e-6
        )
