"""pyro_reinmax.infer.TraceMeanField_ELBO: Pyro's mean-field ELBO with the KL of autoguides'
Delta sites corrected."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

import pyro_reinmax as pr
from pyro_reinmax.infer import TraceLocalEnum_ELBO, TraceMeanField_ELBO
from reference import central_differences, masked_mean_field_loss


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


# ------------------------------------------------- model-side masks and forgotten discrete latents

MODEL_MASK = torch.tensor([True, False, True])
# the masked-out row's prior is degenerate: its KL to any q that uses category 1 is infinite
PRIOR_PROBS = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]], dtype=torch.float64)
GUIDE_LOGITS = torch.tensor([[1.0, 0.0], [0.3, -0.4], [0.0, 2.0]], dtype=torch.float64)


def masked_latent_model(prior_cls=dist.OneHotCategorical, by="poutine"):
    with pyro.plate("n", 3):
        if by == "poutine":
            with pyro.poutine.mask(mask=MODEL_MASK):
                pyro.sample("z", prior_cls(probs=PRIOR_PROBS))
        else:
            pyro.sample("z", prior_cls(probs=PRIOR_PROBS).mask(MODEL_MASK))


def _expected_masked_loss(logits, guide_mask=(True, True, True)) -> float:
    return masked_mean_field_loss(logits, PRIOR_PROBS, MODEL_MASK.tolist(), guide_mask)


@pytest.mark.parametrize("by", ["poutine", "dist"])
@pytest.mark.parametrize("guide_masked", [False, True])
@pytest.mark.parametrize("prior_cls", [dist.OneHotCategorical, pr.OneHotCategorical])
def test_model_mask_on_a_latent_site_is_honoured(prior_cls, guide_masked, by):
    logits = GUIDE_LOGITS.clone().requires_grad_()

    def guide():
        with pyro.plate("n", 3), pyro.poutine.mask(mask=MODEL_MASK if guide_masked else True):
            pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=logits))

    loss = TraceMeanField_ELBO().differentiable_loss(
        lambda: masked_latent_model(prior_cls, by), guide
    )
    (grad,) = torch.autograd.grad(loss, logits)
    guide_mask = MODEL_MASK.tolist() if guide_masked else (True, True, True)
    expected = _expected_masked_loss(GUIDE_LOGITS.numpy(), guide_mask)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    numeric = central_differences(
        lambda logits: _expected_masked_loss(logits, guide_mask), GUIDE_LOGITS.numpy()
    )
    np.testing.assert_allclose(grad.numpy(), numeric, atol=1e-7)


def test_model_mask_on_a_continuous_latent_matches_trace_elbo():
    """Where both parts have closed forms (Normal KL and entropy) the masked term is the
    expectation of Trace_ELBO's Monte Carlo term, loss and gradients."""
    loc = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([0.7, 1.3, 0.4], dtype=torch.float64, requires_grad=True)

    def model():
        with pyro.plate("n", 3), pyro.poutine.mask(mask=MODEL_MASK):
            pyro.sample("s", dist.Normal(torch.zeros(3, dtype=torch.float64), 0.5))

    def guide():
        with pyro.plate("n", 3):
            pyro.sample("s", dist.Normal(loc, scale))

    results = []
    for elbo, particles in [(TraceMeanField_ELBO, 1), (Trace_ELBO, 400_000)]:
        pyro.set_rng_seed(0)
        loss = elbo(
            num_particles=particles, vectorize_particles=True, max_plate_nesting=1
        ).differentiable_loss(model, guide)
        results.append((loss.item(), torch.cat(torch.autograd.grad(loss, [loc, scale]))))
    (ours, our_grads), (reference, reference_grads) = results
    np.testing.assert_allclose(ours, reference, atol=1e-2)
    np.testing.assert_allclose(our_grads.numpy(), reference_grads.numpy(), atol=1e-2)


def test_svi_with_a_degenerate_masked_prior_stays_finite():
    logits = pyro.param("masked_prior_logits", torch.zeros(3, 2, dtype=torch.float64))

    def guide():
        with pyro.plate("n", 3):
            pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=pyro.param("masked_prior_logits")))

    svi = pyro.infer.SVI(
        masked_latent_model, guide, pyro.optim.Adam({"lr": 0.1}), TraceMeanField_ELBO()
    )
    losses = [svi.step() for _ in range(30)]
    assert np.isfinite(losses).all() and torch.isfinite(logits).all()
    # the masked row's guide goes to maximum entropy, the others toward their priors
    probs = pyro.param("masked_prior_logits").softmax(-1).detach()
    assert torch.allclose(probs[1], torch.full((2,), 0.5, dtype=torch.float64), atol=1e-3)
    pyro.clear_param_store()


def test_a_discrete_model_latent_the_guide_forgot_is_refused():
    def model():
        pyro.sample("c", pr.OneHotCategorical(logits=torch.zeros(3)))
        pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(3)))

    def guide():
        pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=torch.zeros(3)))

    with pytest.raises(ValueError, match="model site 'c' is a discrete latent that the guide"):
        TraceMeanField_ELBO().loss(model, guide)


def _diverged_program():
    def model():
        transition = torch.tensor([[0.5, 0.5], [float("nan"), 0.5]])
        z = pyro.sample("z_0", pr.OneHotCategorical(logits=torch.zeros(2)))
        pyro.sample("z_1", pr.OneHotCategorical(probs=z @ transition))

    def guide():
        for t in range(2):
            pyro.sample(f"z_{t}", pr.ReinMaxOneHotCategorical(logits=torch.tensor([-9.0, 9.0])))

    return model, guide


@pytest.mark.parametrize("elbo", [TraceMeanField_ELBO, TraceLocalEnum_ELBO])
def test_an_invalid_parameter_names_the_site_and_the_cause(elbo):
    model, guide = _diverged_program()
    with pytest.raises(ValueError, match=r"probs\[[0-9, ]+\] = nan") as error:
        elbo().loss(model, guide)
    assert "raised in the model after sample site 'z_0'" in str(error.value)
