"""TraceLocalEnum_ELBO (Pyro) against the values of its first implementation, kept as fixtures.

That implementation gave every sampled site its own enumeration dimension and contracted each
factor with the sampled one-hots along them (``sum_c (prod_i z_i[c_i]) log f(c)``). The loss and
the gradient of every parameter, on small models and fixed seeds, were written to
``tests/fixtures/local_enum_pyro.json``; the one-site-at-a-time evaluation must give the same
numbers (it is the same multilinear extension, evaluated with ``1 + sum_i (K_i - 1)`` elements
instead of ``prod_i K_i``)."""

import json
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_reinmax as pr
from pyro_reinmax.infer import TraceLocalEnum_ELBO

FIXTURES = Path(__file__).parents[1] / "fixtures" / "local_enum_pyro.json"
X = torch.tensor([-1.7, 0.2, 2.1, 0.9], dtype=torch.float64)
F64 = torch.float64


def _param(name, value, **kwargs):
    return pyro.param(name, torch.tensor(value, dtype=F64), **kwargs)


def mixture(x):
    locs = _param("locs", [-1.0, 0.5, 1.5])
    scales = _param("scales", [0.7, 1.2, 0.9], constraint=dist.constraints.positive)
    weights = _param("weights", [0.2, -0.1, 0.3])
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", pr.OneHotCategorical(logits=weights))
        pyro.sample("x", dist.Normal(z @ locs, z @ scales), obs=x)


def hmm(x):
    locs = _param("locs", [-1.0, 0.5, 1.5])
    trans = _param(
        "trans",
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]],
        constraint=dist.constraints.simplex,
    )
    z = pyro.sample("z_0", pr.OneHotCategorical(logits=torch.zeros(3, dtype=F64)))
    pyro.sample("x_0", dist.Normal(z @ locs, 1.0), obs=x[0])
    for t in range(1, len(x)):
        z = pyro.sample(f"z_{t}", pr.OneHotCategorical(probs=z @ trans))
        pyro.sample(f"x_{t}", dist.Normal(z @ locs, 1.0), obs=x[t])


def bernoulli(x):
    mu = _param("mu", [-1.0, 1.0])
    with pyro.plate("data", len(x)):
        b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.3, dtype=F64)))
        pyro.sample("x", dist.Normal(b * mu[1] + (1 - b) * mu[0], 1.0), obs=x)


def hybrid(x):
    a = _param("shift_y", [-1.0, 1.0])
    b = _param("shift_z", [0.5, -0.5, 0.0])
    with pyro.plate("data", len(x)):
        y = pyro.sample("y", pr.OneHotCategorical(probs=torch.tensor([0.3, 0.7], dtype=F64)))
        z = pyro.sample("z", pr.OneHotCategorical(logits=b))
        pyro.sample("x", dist.Normal(y @ a + z @ b, 1.0), obs=x)


def three_parents(x):
    w = _param("w", [[0.1, -0.4, 0.8, 0.3], [0.5, 0.2, -0.6, 0.0], [-0.2, 0.7, 0.1, -0.9]])
    with pyro.plate("data", len(x)):
        zs = [pyro.sample(f"z{i}", pr.OneHotCategorical(logits=w[i] * 0.5)) for i in range(3)]
        loc = sum(z @ w[i] * (i + 1) for i, z in enumerate(zs))
        pyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def plated_guide(sites, categories, bernoulli_sites=()):
    def guide(x):
        with pyro.plate("data", len(x)):
            for i, name in enumerate(sites):
                init = torch.linspace(-0.5, 0.5, len(x) * categories, dtype=F64) * (i + 1)
                logits = pyro.param(f"q_{name}", init.reshape(len(x), categories))
                pyro.sample(name, pr.ReinMaxOneHotCategorical(logits=logits))
            for name in bernoulli_sites:
                logits = pyro.param(f"q_{name}", torch.linspace(-1, 1, len(x), dtype=F64))
                pyro.sample(name, pr.ReinMaxBernoulli(logits=logits))

    return guide


def chain_guide(x):
    logits = pyro.param("q", torch.linspace(-1, 1, 3 * len(x), dtype=F64).reshape(len(x), 3))
    for t in range(len(x)):
        pyro.sample(f"z_{t}", pr.ReinMaxOneHotCategorical(logits=logits[t]))


CASES = {
    "mixture": (mixture, plated_guide(["z"], 3), 1),
    "hmm": (hmm, chain_guide, 0),
    "bernoulli": (bernoulli, plated_guide([], 2, ["b"]), 1),
    "hybrid": (hybrid, plated_guide(["z"], 3), 1),
    "three_parents": (three_parents, plated_guide(["z0", "z1", "z2"], 4), 1),
}


def loss_and_grads(case: str, analytic_kl: bool, seed: int) -> dict:
    model, guide, nesting = CASES[case]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    elbo = TraceLocalEnum_ELBO(analytic_kl=analytic_kl, max_plate_nesting=nesting)
    loss = elbo.differentiable_loss(model, guide, X)
    params = dict(sorted(pyro.get_param_store().named_parameters()))
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {
        "loss": loss.item(),
        "grads": {
            name: (torch.zeros_like(p) if g is None else g).reshape(-1).tolist()
            for (name, p), g in zip(params.items(), grads, strict=True)
        },
    }


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
        torch.testing.assert_close(
            torch.tensor(grad), torch.tensor(expected["grads"][name]), rtol=1e-9, atol=1e-10
        )
