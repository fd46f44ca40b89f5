"""SVI with the ReinMax guides reaches what exact enumeration reaches, with every Pyro ELBO."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import (
    SVI,
    JitTrace_ELBO,
    Predictive,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
    config_enumerate,
)
from pyro.infer.autoguide import AutoDelta
from pyro.infer.reparam import AutoReparam
from pyro.optim import ClippedAdam

import pyro_reinmax as pr

K, N = 3, 60


def _data() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    components = torch.randint(0, K, (N,), generator=generator)
    return torch.tensor([-4.0, 0.0, 5.0])[components] + 0.8 * torch.randn(N, generator=generator)


X = _data()


def model(x):
    weights = pyro.param("weights", torch.zeros(K))
    locs = pyro.param("locs", torch.tensor([-3.0, 0.0, 3.0]))
    scales = pyro.param("scales", torch.ones(K), constraint=dist.constraints.positive)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pr.OneHotCategorical(logits=weights))
        pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, scales)), obs=x)


def make_guide(cls=pr.ReinMaxOneHotCategorical, temperature=1.0):
    def guide(x):
        logits = pyro.param("assignment_logits", torch.zeros(x.shape[0], K))
        kwargs = {"temperature": temperature} if cls.has_rsample else {}
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", cls(logits=logits, **kwargs))

    return guide


def exact_log_likelihood() -> float:
    """log p(x | weights, locs, scales) with the assignments summed out by hand."""
    weights, locs, scales = (pyro.param(n).detach() for n in ["weights", "locs", "scales"])
    joint = weights.log_softmax(-1) + dist.Normal(locs, scales).log_prob(X[:, None])
    return joint.logsumexp(-1).sum().item()


def fit(loss, guide, fitted_model=model, steps=1000) -> float:
    """Adam with lr 0.2 on the local assignment logits and 0.05 on the globals, decayed 10x."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    decay = 0.1 ** (1 / steps)
    optimizer = ClippedAdam(
        lambda name, _: {"lr": 0.2 if name == "assignment_logits" else 0.05, "lrd": decay}
    )
    svi = SVI(fitted_model, guide, optimizer, loss)
    for _ in range(steps):
        svi.step(X)
    return exact_log_likelihood()


@pytest.fixture(scope="module")
def enumeration_optimum() -> float:
    return fit(TraceEnum_ELBO(max_plate_nesting=1), lambda x: None, config_enumerate(model))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize(
    "loss",
    [
        Trace_ELBO(max_plate_nesting=1),
        TraceMeanField_ELBO(max_plate_nesting=1),
        Trace_ELBO(max_plate_nesting=1, num_particles=8, vectorize_particles=True),
        JitTrace_ELBO(max_plate_nesting=1),
    ],
    ids=["Trace_ELBO", "TraceMeanField_ELBO", "vectorized-particles", "JitTrace_ELBO"],
)
def test_reinmax_guides_reach_the_enumeration_optimum(loss, enumeration_optimum):
    assert fit(loss, make_guide()) == pytest.approx(enumeration_optimum, abs=1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "cls", [pr.StraightThroughOneHotCategorical, pr.GumbelStraightThroughOneHotCategorical]
)
def test_baselines_train_on_the_linear_mixture(cls, enumeration_optimum):
    assert fit(TraceMeanField_ELBO(max_plate_nesting=1), make_guide(cls)) == pytest.approx(
        enumeration_optimum, abs=1.0
    )


def test_trace_graph_elbo_matches_trace_elbo_on_the_same_draws():
    """A reparameterized site adds no score-function term: TraceGraph_ELBO's gradient is
    Trace_ELBO's on the same draws."""
    guide = make_guide()
    gradients = []
    for loss in [Trace_ELBO(max_plate_nesting=1), TraceGraph_ELBO(max_plate_nesting=1)]:
        pyro.clear_param_store()
        pyro.set_rng_seed(5)
        value = loss.loss_and_grads(model, guide, X)
        params = [pyro.param(n).unconstrained() for n in ["assignment_logits", "locs"]]
        gradients.append((value, [p.grad.clone() for p in params]))
    (loss_a, grads_a), (loss_b, grads_b) = gradients
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b)


def test_predictive_draws_one_hot_assignments():
    guide = make_guide()
    fit(TraceMeanField_ELBO(max_plate_nesting=1), guide, steps=200)
    samples = Predictive(model, guide=guide, num_samples=7, return_sites=["z", "x"])(X)
    assert samples["z"].shape == (7, N, K)
    assert torch.equal(samples["z"].sum(-1), torch.ones(7, N))
    prior_draws = Predictive(model, num_samples=5, return_sites=["z"])(X)["z"]
    assert torch.equal(prior_draws.sum(-1), torch.ones(5, N))


def test_elbo_is_a_bound_that_is_tight_at_the_exact_posterior():
    """Our log_prob is a mass, so the ELBO is a true lower bound: with the guide set to the exact
    posterior, log p(x, z) - log q(z) equals log p(x) for every draw (zero variance)."""
    pyro.clear_param_store()
    model(X)
    weights, locs, scales = (pyro.param(n).detach() for n in ["weights", "locs", "scales"])
    joint = weights.log_softmax(-1) + dist.Normal(locs, scales).log_prob(X[:, None])
    posterior = joint - joint.logsumexp(-1, keepdim=True)

    def exact_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=posterior))

    elbo = Trace_ELBO(max_plate_nesting=1, num_particles=10, vectorize_particles=True)
    assert -elbo.loss(model, exact_guide, X) == pytest.approx(exact_log_likelihood(), rel=1e-5)
    assert -elbo.loss(model, make_guide(), X) < exact_log_likelihood()


def test_auto_reparam_leaves_reinmax_sites_alone():
    reparam_model = AutoReparam()(model)
    guide = AutoDelta(pyro.poutine.block(reparam_model, hide=["z"]))
    trace = pyro.poutine.trace(reparam_model).get_trace(X)
    assert type(trace.nodes["z"]["fn"]).__name__ == "OneHotCategorical"
    assert guide is not None


def test_prior_pathwise_gradient_needs_a_value_differentiable_prior():
    """The gradient of -KL(q || p) by Trace_ELBO with many particles: unbiased with
    pyro_reinmax.OneHotCategorical as the prior, silently biased with Pyro's stock prior (whose
    log_prob takes an argmax)."""
    prior = torch.tensor([1.0, -0.5, 0.2])
    q_init = torch.tensor([-0.3, 0.8, 0.1])
    q = q_init.clone().requires_grad_()
    kl = torch.distributions.kl_divergence(
        pr.OneHotCategorical(logits=q), pr.OneHotCategorical(logits=prior)
    )
    (exact,) = torch.autograd.grad(kl, q)

    def estimate(prior_cls):
        logits = q_init.clone().requires_grad_()

        def prior_model():
            pyro.sample("z", prior_cls(logits=prior))

        def guide():
            pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=logits))

        elbo = Trace_ELBO(num_particles=200_000, vectorize_particles=True, max_plate_nesting=0)
        (grad,) = torch.autograd.grad(elbo.differentiable_loss(prior_model, guide), logits)
        return grad

    torch.testing.assert_close(estimate(pr.OneHotCategorical), exact, atol=0.01, rtol=0)
    assert (estimate(dist.OneHotCategorical) - exact).abs().max() > 0.1
