"""At temperature 1 the expected ReinMax gradient of a quadratic equals the exact gradient
(computed by enumeration); straight-through's does not. For linear objectives both are unbiased."""

import numpy as np
import pytest
import torch

import pyro_reinmax
from reference import exact_expected_gradient

NUM_VARIABLES, NUM_CATEGORIES, NUM_SAMPLES = 3, 3, 200_000


def _problem(seed: int):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(NUM_VARIABLES, NUM_CATEGORIES))
    size = NUM_VARIABLES * NUM_CATEGORIES
    a = rng.normal(size=(size, size))
    b = rng.normal(size=size)
    return logits, a, b


def _mean_gradient(estimator, logits, f, temperature):
    """Per-sample gradients of f(D) over many independent draws: mean and standard error."""
    leaf = torch.tensor(logits).expand(NUM_SAMPLES, -1, -1).clone().requires_grad_()
    sample, _ = estimator(leaf, temperature)
    f(sample.reshape(NUM_SAMPLES, -1)).sum().backward()
    per_sample = leaf.grad.numpy()
    return per_sample.mean(0), per_sample.std(0) / np.sqrt(NUM_SAMPLES)


def _quadratic(a, b):
    def torch_f(d):
        return torch.einsum("ni,ij,nj->n", d, torch.tensor(a), d) + d @ torch.tensor(b)

    def numpy_f(d):
        flat = d.reshape(-1)
        return flat @ a @ flat + b @ flat

    return torch_f, numpy_f


@pytest.mark.parametrize("seed", [0, 1])
def test_reinmax_is_unbiased_on_quadratics_at_temperature_one(seed):
    logits, a, b = _problem(seed)
    torch_f, numpy_f = _quadratic(a, b)
    exact = exact_expected_gradient(logits, numpy_f)
    mean, stderr = _mean_gradient(pyro_reinmax.reinmax, logits, torch_f, 1.0)
    assert np.all(np.abs(mean - exact) < 5 * stderr + 1e-9), (mean, exact, stderr)


@pytest.mark.parametrize("seed", [0, 1])
def test_straight_through_is_biased_on_the_same_quadratics(seed):
    logits, a, b = _problem(seed)
    torch_f, numpy_f = _quadratic(a, b)
    exact = exact_expected_gradient(logits, numpy_f)
    mean, stderr = _mean_gradient(pyro_reinmax.straight_through, logits, torch_f, 1.0)
    z = np.abs(mean - exact) / stderr
    assert z.max() > 10, z
    relative_bias = np.linalg.norm(mean - exact) / np.linalg.norm(exact)
    assert relative_bias > 0.05, relative_bias


def test_reinmax_is_biased_at_other_temperatures():
    logits, a, b = _problem(0)
    torch_f, numpy_f = _quadratic(a, b)
    exact = exact_expected_gradient(logits, numpy_f)
    mean, stderr = _mean_gradient(pyro_reinmax.reinmax, logits, torch_f, 2.0)
    assert (np.abs(mean - exact) / stderr).max() > 10


@pytest.mark.parametrize("estimator", [pyro_reinmax.reinmax, pyro_reinmax.straight_through])
def test_linear_objectives_are_unbiased(estimator):
    logits, _, b = _problem(2)
    exact = exact_expected_gradient(logits, lambda d: b @ d.reshape(-1))
    mean, stderr = _mean_gradient(estimator, logits, lambda d: d @ torch.tensor(b), 1.0)
    assert np.all(np.abs(mean - exact) < 5 * stderr + 1e-9)
