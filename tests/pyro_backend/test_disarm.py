"""TraceDisARM_ELBO: its gradient is unbiased for the exact ELBO gradient (enumerating the 2^3
Bernoulli configurations in closed form) with a reparameterized Normal site beside the Bernoulli
ones, the pair is antithetic, and non-Bernoulli score-function sites are refused."""

import itertools
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from tests_pyro_helpers import elbo_gradient_estimates

import pyro_reinmax as pr
from pyro_reinmax.infer import TraceDisARM_ELBO
from reference import assert_unbiased

X = torch.tensor([0.7, -1.2], dtype=torch.float64)
W = torch.tensor([[1.0, -0.5], [0.8, 1.5], [-1.1, 0.4]], dtype=torch.float64)
PRIOR = torch.tensor([0.3, 0.6, 0.5], dtype=torch.float64)


def model(*_):
    shift = pyro.sample("shift", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    with pyro.plate("bits", 3):
        b = pyro.sample("b", dist.Bernoulli(PRIOR))
    mean = shift + b @ W
    pyro.sample("x", dist.Normal(torch.tanh(mean), 0.5).to_event(1), obs=X)


def guide(logits, loc, scale):
    pyro.sample("shift", dist.Normal(loc, scale))
    with pyro.plate("bits", 3):
        pyro.sample("b", dist.Bernoulli(logits=logits))


def exact_elbo(logits, loc, scale, nodes=40):
    """The ELBO with the 8 configurations of b enumerated and the shift integrated by
    Gauss-Hermite quadrature (tanh makes it non-linear in the shift)."""
    points, weights = (
        torch.tensor(a, dtype=torch.float64) for a in np.polynomial.hermite_e.hermegauss(nodes)
    )
    weights = weights / math.sqrt(2 * math.pi)
    shifts = loc + scale * points
    total = 0.0
    log_q1, log_q0 = torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits)
    for config in itertools.product([0.0, 1.0], repeat=3):
        b = torch.tensor(config, dtype=torch.float64)
        log_q = (b * log_q1 + (1 - b) * log_q0).sum()
        log_prior = (b * PRIOR.log() + (1 - b) * (1 - PRIOR).log()).sum()
        means = torch.tanh(shifts[:, None] + b @ W)
        likelihood = dist.Normal(means, 0.5).log_prob(X).sum(-1)
        expected_likelihood = (weights * likelihood).sum()
        total = total + log_q.exp() * (log_prior + expected_likelihood - log_q)
    prior_shift = -(loc**2 + scale**2) / 2 - 0.5 * math.log(2 * math.pi)
    return total + prior_shift + 0.5 * torch.log(2 * math.pi * math.e * scale**2)


def test_gradient_is_unbiased_for_the_exact_elbo_gradient():
    torch.manual_seed(0)
    params = [
        torch.tensor([0.4, -0.8, 1.1], dtype=torch.float64),
        torch.tensor(0.2, dtype=torch.float64),
        torch.tensor(0.7, dtype=torch.float64),
    ]
    leaves = [p.clone().requires_grad_() for p in params]
    exact = torch.autograd.grad(exact_elbo(*leaves), leaves)
    elbo = TraceDisARM_ELBO(num_pairs=2, max_plate_nesting=1)
    estimates = elbo_gradient_estimates(elbo, model, guide, params, replicates=400)
    for samples, expected in zip(estimates, exact, strict=True):
        assert_unbiased(samples, expected.numpy())


def test_the_pair_is_antithetic_and_shares_the_other_random_choices():
    torch.manual_seed(3)
    logits = torch.zeros(3, dtype=torch.float64)
    values = {}
    elbo = TraceDisARM_ELBO(num_pairs=1, max_plate_nesting=1)
    original = elbo._particle

    def record(model, guide, args, kwargs, antithetic):
        f, trace = original(model, guide, args, kwargs, antithetic)
        values[antithetic] = (trace.nodes["b"]["value"], trace.nodes["shift"]["value"])
        return f, trace

    elbo._particle = record
    elbo.differentiable_loss(model, guide, logits, torch.tensor(0.0), torch.tensor(1.0))
    (b, shift), (b_anti, shift_anti) = values[False], values[True]
    assert torch.equal(shift, shift_anti)
    # at p = 1/2, u < 1/2 and 1 - u < 1/2 exclude each other: the pair disagrees everywhere
    assert torch.equal(b + b_anti, torch.ones(3, dtype=torch.float64))


def test_refuses_a_categorical_score_function_site():
    def categorical_guide(*_):
        pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(3)))

    def categorical_model(*_):
        pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(3)))

    with pytest.raises(ValueError, match=r"Bernoulli sites only\. Use TraceRLOO_ELBO"):
        TraceDisARM_ELBO().loss(categorical_model, categorical_guide)


@pytest.mark.parametrize("pairs", [0, 1.5])
def test_needs_a_positive_number_of_pairs(pairs):
    with pytest.raises(ValueError, match="num_pairs must be an integer >= 1"):
        TraceDisARM_ELBO(num_pairs=pairs)
