"""pyro_reinmax.infer.TraceMeanField_ELBO: Pyro's mean-field ELBO with the KL of autoguides'
Delta sites corrected."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

import pyro_reinmax as pr
from pyro_reinmax.infer import TraceMeanField_ELBO


def _loss_and_grads(elbo, model, guide, particles=200_000):
    pyro.set_rng_seed(0)
    params = list(guide.parameters())
    loss = elbo(
        num_particles=particles, vectorize_particles=True, max_plate_nesting=1
    ).differentiable_loss(model, guide)
    return loss.item(), torch.stack([g.sum() for g in torch.autograd.grad(loss, params)])


def constrained_model():
    pyro.sample("s", dist.LogNormal(0.0, 1.0))
    pyro.sample("w", dist.Dirichlet(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)))


@pytest.fixture
def autoguide():
    guide = AutoNormal(constrained_model, init_scale=0.5)
    guide()
    with torch.no_grad():
        for p in guide.parameters():
            p.add_(0.3)  # away from the start, so the gradients are not trivially small
    return guide


def test_autoguide_gradients_match_trace_elbo(autoguide):
    """The mean-field estimate has the expectation of Trace_ELBO's: the same loss and gradients
    within Monte Carlo error."""
    loss, grads = _loss_and_grads(TraceMeanField_ELBO, constrained_model, autoguide)
    reference_loss, reference_grads = _loss_and_grads(Trace_ELBO, constrained_model, autoguide)
    assert loss == pytest.approx(reference_loss, abs=0.02)
    torch.testing.assert_close(grads, reference_grads, atol=0.02, rtol=0)


def test_pyros_own_mean_field_elbo_is_biased_there(autoguide):
    """The trap this class exists for: Pyro's registered KL(Delta, q) drops the log-Jacobian."""
    _, grads = _loss_and_grads(pyro.infer.TraceMeanField_ELBO, constrained_model, autoguide)
    _, reference_grads = _loss_and_grads(Trace_ELBO, constrained_model, autoguide)
    assert (grads - reference_grads).abs().max() > 0.5


def test_analytic_kls_elsewhere_are_pyros():
    prior, posterior = torch.tensor([0.2, 0.5, 0.3]), torch.tensor([0.6, 0.3, 0.1])

    def model():
        pyro.sample("z", pr.OneHotCategorical(probs=prior))

    def guide():
        pyro.sample("z", pr.ReinMaxOneHotCategorical(probs=posterior))

    expected = (posterior * (posterior / prior).log()).sum().item()
    assert TraceMeanField_ELBO().loss(model, guide) == pytest.approx(expected, rel=1e-6)
