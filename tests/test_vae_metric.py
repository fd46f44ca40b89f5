"""The VAE example's metrics against exact enumeration of all 8^4 = 4,096 latent configurations of
a few test digits, on both backends: the importance weights log p(x, z) - log q(z | x) that both
the ELBO and the importance-weighted bound are built from must give

* a mean equal to the exact ELBO, sum_z q(z | x) (log p(x, z) - log q(z | x)), and
* importance ratios p(x, z) / q(z | x) whose mean is exactly p(x) = sum_z p(x, z),

within Monte Carlo error; ``evaluate``'s IWAE bound is at least its ELBO on the same draws."""

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

DIGITS, SAMPLES, STEPS = 6, 2000, 20


def _configure():
    from reinmax_examples.vae_pyro import configure

    arguments = SimpleNamespace(
        latent="8x4", dataset="digits", data=None, steps=STEPS, lr=None, temperature=None
    )
    return configure(arguments)


def _all_configurations(latents: int, categories: int) -> np.ndarray:
    """Every joint one-hot configuration: K^L x L x K."""
    indices = np.array(list(itertools.product(range(categories), repeat=latents)))
    return np.eye(categories)[indices]


def _exact_elbo(log_joint: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """sum_z q(z | x) (log p(x, z) - log q(z | x)) per digit (digits x configurations in)."""
    return (np.exp(log_q) * (log_joint - log_q)).sum(-1)


def _check_weights(weights: np.ndarray, log_joint: np.ndarray, log_q: np.ndarray) -> None:
    """``weights``: samples x digits; ``log_joint``, ``log_q``: digits x configurations."""
    exact_elbo = _exact_elbo(log_joint, log_q)
    evidence = np.logaddexp.reduce(log_joint, axis=-1)
    standard_error = weights.std(0) / math.sqrt(len(weights))
    np.testing.assert_array_less(np.abs(weights.mean(0) - exact_elbo), 5 * standard_error + 1e-9)
    ratios = np.exp(weights - evidence)
    ratio_error = ratios.std(0) / math.sqrt(len(ratios))
    np.testing.assert_array_less(np.abs(ratios.mean(0) - 1), 5 * ratio_error + 1e-9)
    assert (exact_elbo < evidence).all()


def _check_evaluate(result: dict, weights: np.ndarray, log_joint, log_q) -> None:
    """``evaluate`` averages TEST_SAMPLES weights per digit over the digits."""
    from reinmax_examples.vae_pyro import TEST_SAMPLES

    exact_elbo = _exact_elbo(log_joint, log_q).mean()
    standard_error = weights.std(0).mean() / math.sqrt(TEST_SAMPLES)
    assert abs(-result["test_neg_elbo"] - exact_elbo) < 5 * standard_error
    assert result["metric"] >= -result["test_neg_elbo"]


def test_pyro_vae_weights_against_enumeration():
    import torch
    from pyro import poutine

    from reinmax_examples import vae_pyro

    config = _configure()
    problem = vae_pyro.Problem(config, seed=0)
    fitted = vae_pyro.fit(problem, "reinmax", seed=0, config=config, on_step=lambda *_: None)
    decoder, guide = fitted
    x = problem.test[:DIGITS]
    latents, categories = config["latents"], config["categories"]
    z = torch.tensor(_all_configurations(latents, categories), dtype=x.dtype)
    with torch.no_grad():
        x_rep, z_rep = x.repeat_interleave(len(z), 0), z.repeat(DIGITS, 1, 1)
        conditioned = poutine.condition(vae_pyro.model, data={"z": z_rep})
        trace = poutine.trace(conditioned).get_trace(x_rep, decoder, latents, categories)
        log_joint = trace.nodes["z"]["fn"].log_prob(z_rep) + trace.nodes["x"]["fn"].log_prob(x_rep)
        q = poutine.trace(guide).get_trace(x, decoder, latents, categories).nodes["z"]["fn"]
        log_q = q.log_prob(z[:, None]).T
    torch.manual_seed(1)
    weights = vae_pyro.log_weights(problem, fitted, x, SAMPLES).double().numpy()
    log_joint = log_joint.reshape(DIGITS, -1).double().numpy()
    log_q = log_q.double().numpy()
    _check_weights(weights, log_joint, log_q)
    problem.test = x
    _check_evaluate(vae_pyro.evaluate(problem, fitted), weights, log_joint, log_q)


def test_numpyro_vae_weights_against_enumeration():
    import jax
    import jax.numpy as jnp
    from numpyro import handlers

    from reinmax_examples import vae_numpyro

    config = _configure()
    problem = vae_numpyro.Problem(config, seed=0)
    fitted = vae_numpyro.fit(problem, "reinmax", seed=0, config=config, on_step=lambda *_: None)
    guide, params = fitted
    x = problem.test[:DIGITS]
    z = jnp.asarray(_all_configurations(config["latents"], config["categories"]), dtype=x.dtype)
    x_rep, z_rep = jnp.repeat(x, len(z), 0), jnp.tile(z, (DIGITS, 1, 1))
    model = handlers.substitute(problem.model, data=params)
    trace = handlers.trace(handlers.condition(model, data={"z": z_rep})).get_trace(x_rep)
    log_joint = trace["z"]["fn"].log_prob(z_rep) + trace["x"]["fn"].log_prob(x_rep)
    seeded_guide = handlers.seed(handlers.substitute(guide, data=params), jax.random.PRNGKey(1))
    q = handlers.trace(seeded_guide).get_trace(x)["z"]["fn"]
    log_q = np.asarray(q.log_prob(z[:, None])).T
    log_joint = np.asarray(log_joint).reshape(DIGITS, -1)
    weights = np.asarray(vae_numpyro.log_weights(problem, fitted, x, SAMPLES))
    _check_weights(weights, log_joint, log_q)
    problem.test = x
    _check_evaluate(vae_numpyro.evaluate(problem, fitted), weights, log_joint, log_q)


@pytest.mark.parametrize(("latents", "categories"), [(2, 3), (3, 2)])
def test_all_configurations_are_every_distinct_one_hot_assignment(latents, categories):
    z = _all_configurations(latents, categories)
    assert z.shape == (categories**latents, latents, categories)
    assert (z.sum(-1) == 1).all()
    assert len({tuple(row.argmax(-1)) for row in z}) == categories**latents
