"""TraceRLOO_ELBO: its gradient is unbiased for the exact ELBO gradient (computed in closed form
by enumerating the discrete site), for a score-function categorical site and a reparameterized
continuous site together; and its argument errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from tests_pyro_helpers import elbo_gradient_estimates

import pyro_reinmax as pr
from pyro_reinmax.infer import TraceRLOO_ELBO
from reference import assert_unbiased

X = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
LOCS = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
PRIOR = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)


def model(*_):
    shift = pyro.sample("shift", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    with pyro.plate("data", 3):
        z = pyro.sample("z", pr.OneHotCategorical(probs=PRIOR))
        pyro.sample("x", dist.Normal(shift + z @ LOCS, 1.0), obs=X)


def guide(logits, loc, scale):
    pyro.sample("shift", dist.Normal(loc, scale))
    with pyro.plate("data", 3):
        pyro.sample("z", pr.OneHotCategorical(logits=logits))


def exact_elbo(logits, loc, scale):
    """E_q[log p(x, z, shift) - log q(z, shift)] in closed form."""
    log_q = logits.log_softmax(-1)
    # E_shift log N(x | shift + loc_k, 1) = log N(x | loc + loc_k, 1) - scale^2 / 2
    likelihood = dist.Normal(loc + LOCS, 1.0).log_prob(X[:, None]) - scale**2 / 2
    discrete = (log_q.exp() * (PRIOR.log() + likelihood - log_q)).sum()
    prior_shift = -(loc**2 + scale**2) / 2 - 0.5 * math.log(2 * math.pi)
    entropy_shift = 0.5 * torch.log(2 * math.pi * math.e * scale**2)
    return discrete + prior_shift + entropy_shift


def test_gradient_is_unbiased_for_the_exact_elbo_gradient():
    torch.manual_seed(0)
    params = [
        torch.randn(3, 3, dtype=torch.float64),
        torch.tensor(0.3, dtype=torch.float64),
        torch.tensor(0.8, dtype=torch.float64),
    ]
    leaves = [p.clone().requires_grad_() for p in params]
    exact = torch.autograd.grad(exact_elbo(*leaves), leaves)
    elbo = TraceRLOO_ELBO(num_particles=4, max_plate_nesting=1)
    estimates = elbo_gradient_estimates(elbo, model, guide, params, replicates=400)
    for samples, expected in zip(estimates, exact, strict=True):
        assert_unbiased(samples, expected.numpy())


def test_loss_is_the_particles_mean_of_the_elbo():
    """With a guide equal to the posterior, every particle's log weight is log p(x)."""
    torch.manual_seed(1)

    def discrete_model():
        with pyro.plate("data", 3):
            z = pyro.sample("z", pr.OneHotCategorical(probs=PRIOR))
            pyro.sample("x", dist.Normal(z @ LOCS, 1.0), obs=X)

    joint = PRIOR.log() + dist.Normal(LOCS, 1.0).log_prob(X[:, None])
    posterior = joint.log_softmax(-1)
    evidence = joint.logsumexp(-1).sum()

    def posterior_guide():
        with pyro.plate("data", 3):
            pyro.sample("z", pr.OneHotCategorical(logits=posterior))

    loss = TraceRLOO_ELBO(num_particles=3, max_plate_nesting=1).loss(
        discrete_model, posterior_guide
    )
    assert loss == pytest.approx(-evidence.item(), rel=1e-10)


@pytest.mark.parametrize("particles", [1, 0])
def test_needs_two_particles(particles):
    with pytest.raises(ValueError, match="num_particles must be >= 2"):
        TraceRLOO_ELBO(num_particles=particles)


@pytest.mark.filterwarnings("ignore:Found vars in model but not guide")
def test_refuses_a_discrete_latent_the_guide_forgot():
    def no_z_guide(logits, loc, scale):
        pyro.sample("shift", dist.Normal(loc, scale))

    with pytest.raises(ValueError, match="'z' is a discrete latent that the guide does not"):
        TraceRLOO_ELBO(num_particles=2, max_plate_nesting=1).loss(
            model, no_z_guide, None, torch.tensor(0.0), torch.tensor(1.0)
        )
