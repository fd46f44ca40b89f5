"""TraceLocalEnum_ELBO (NumPyro) against the values of its first implementation, kept as fixtures.

That implementation gave every sampled site its own enumeration dimension and contracted each
factor with the sampled one-hots along them (``sum_c (prod_i z_i[c_i]) log f(c)``). The loss and
the gradient of every parameter, on small models and fixed keys, were written to
``tests/fixtures/local_enum_numpyro.json``; the one-site-at-a-time evaluation must give the same
numbers (it is the same multilinear extension, evaluated with ``1 + sum_i (K_i - 1)`` elements
instead of ``prod_i K_i``)."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan

import numpyro_reinmax as nr
from numpyro_reinmax.infer import TraceLocalEnum_ELBO

FIXTURES = Path(__file__).parents[1] / "fixtures" / "local_enum_numpyro.json"
X = jnp.array([-1.7, 0.2, 2.1, 0.9])
PARAMS = {
    "locs": jnp.array([-1.0, 0.5, 1.5]),
    "scales": jnp.array([0.7, 1.2, 0.9]),
    "weights": jnp.array([0.2, -0.1, 0.3]),
    "trans": jnp.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]),
    "mu": jnp.array([-1.0, 1.0]),
    "shift_y": jnp.array([-1.0, 1.0]),
    "shift_z": jnp.array([0.5, -0.5, 0.0]),
    "w": jnp.array([[0.1, -0.4, 0.8, 0.3], [0.5, 0.2, -0.6, 0.0], [-0.2, 0.7, 0.1, -0.9]]),
    "q": jnp.linspace(-1, 1, 12).reshape(4, 3),
    "q_z": jnp.linspace(-0.5, 0.5, 12).reshape(4, 3),
    "q_b": jnp.linspace(-1, 1, 4),
    **{f"q_z{i}": jnp.linspace(-0.5, 0.5, 16).reshape(4, 4) * (i + 1) for i in range(3)},
}


def _p(name):
    return numpyro.param(name, None)


def mixture(x):
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=_p("weights")))
        numpyro.sample("x", dist.Normal(z @ _p("locs"), z @ _p("scales")), obs=x)


def hmm(x):
    locs, trans = _p("locs"), _p("trans")
    z = numpyro.sample("z_0", nr.OneHotCategorical(logits=jnp.zeros(3)))
    numpyro.sample("x_0", dist.Normal(z @ locs, 1.0), obs=x[0])
    for t in range(1, len(x)):
        z = numpyro.sample(f"z_{t}", nr.OneHotCategorical(probs=z @ trans))
        numpyro.sample(f"x_{t}", dist.Normal(z @ locs, 1.0), obs=x[t])


def hmm_scan(x):
    locs, trans = _p("locs"), _p("trans")

    def step(z_prev, x_t):
        z = numpyro.sample("z", nr.OneHotCategorical(probs=z_prev @ trans))
        numpyro.sample("x", dist.Normal(z @ locs, 1.0), obs=x_t)
        return z, None

    scan(step, jnp.array([1.0, 0.0, 0.0]), x)


def bernoulli(x):
    mu = _p("mu")
    with numpyro.plate("data", len(x)):
        b = numpyro.sample("b", dist.Bernoulli(0.3))
        numpyro.sample("x", dist.Normal(b * mu[1] + (1 - b) * mu[0], 1.0), obs=x)


def hybrid(x):
    a, b = _p("shift_y"), _p("shift_z")
    with numpyro.plate("data", len(x)):
        y = numpyro.sample("y", nr.OneHotCategorical(probs=jnp.array([0.3, 0.7])))
        z = numpyro.sample("z", nr.OneHotCategorical(logits=b))
        numpyro.sample("x", dist.Normal(y @ a + z @ b, 1.0), obs=x)


def three_parents(x):
    w = _p("w")
    with numpyro.plate("data", len(x)):
        zs = [numpyro.sample(f"z{i}", nr.OneHotCategorical(logits=w[i] * 0.5)) for i in range(3)]
        loc = sum(z @ w[i] * (i + 1) for i, z in enumerate(zs))
        numpyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def plated_guide(sites, bernoulli_sites=()):
    def guide(x):
        with numpyro.plate("data", len(x)):
            for name in sites:
                numpyro.sample(name, nr.ReinMaxOneHotCategorical(logits=_p(f"q_{name}")))
            for name in bernoulli_sites:
                numpyro.sample(name, nr.ReinMaxBernoulli(logits=_p(f"q_{name}")))

    return guide


def chain_guide(x):
    for t in range(len(x)):
        numpyro.sample(f"z_{t}", nr.ReinMaxOneHotCategorical(logits=_p("q")[t]))


def scan_guide(x):
    numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=_p("q")))


CASES = {
    "mixture": (mixture, plated_guide(["z"]), 1),
    "hmm": (hmm, chain_guide, 0),
    "hmm_scan": (hmm_scan, scan_guide, 0),
    "bernoulli": (bernoulli, plated_guide([], ["b"]), 1),
    "hybrid": (hybrid, plated_guide(["z"]), 1),
    "three_parents": (three_parents, plated_guide(["z0", "z1", "z2"]), 1),
}


def loss_and_grads(case: str, analytic_kl: bool, seed: int) -> dict:
    model, guide, nesting = CASES[case]
    elbo = TraceLocalEnum_ELBO(analytic_kl=analytic_kl, max_plate_nesting=nesting)

    def loss(params):
        return elbo.loss(jax.random.PRNGKey(seed), params, model, guide, X)

    value, grads = jax.jit(jax.value_and_grad(loss))(PARAMS)
    return {"loss": float(value), "grads": {n: np.ravel(g).tolist() for n, g in grads.items()}}


def fixture_key(case: str, analytic_kl: bool, seed: int) -> str:
    return f"{case}/analytic_kl={analytic_kl}/seed={seed}"


KEYS = [(case, kl, seed) for case in CASES for kl in (False, True) for seed in (0, 1)]


@pytest.mark.parametrize(("case", "analytic_kl", "seed"), KEYS)
def test_loss_and_gradients_equal_the_first_implementation(case, analytic_kl, seed):
    expected = json.loads(FIXTURES.read_text())[fixture_key(case, analytic_kl, seed)]
    actual = loss_and_grads(case, analytic_kl, seed)
    assert actual["loss"] == pytest.approx(expected["loss"], abs=1e-10)
    assert actual["grads"].keys() == expected["grads"].keys()
    for name, grad in actual["grads"].items():
        np.testing.assert_allclose(grad, expected["grads"][name], rtol=1e-9, atol=1e-10)
