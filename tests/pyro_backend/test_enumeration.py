"""Enumeration: model-side with the ReinMax classes, and guide-side equal to a plain guide."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

import pyro_reinmax as pr

X = torch.tensor([-1.0, 0.5, 2.0, 3.5], dtype=torch.float64)
LOCS = torch.tensor([-1.0, 1.5, 3.0], dtype=torch.float64)
PRIOR = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64)
GUIDE_LOGITS = torch.tensor(
    [[0.2, 1.0, -0.3], [0.1, -2.0, 0.4], [1.0, 0.0, 0.3], [-0.5, 0.5, 0.0]], dtype=torch.float64
)
ESTIMATORS = [
    pr.ReinMaxOneHotCategorical,
    pr.StraightThroughOneHotCategorical,
    pr.GumbelStraightThroughOneHotCategorical,
]


def model(prior_cls=pr.OneHotCategorical):
    with pyro.plate("data", len(X)):
        z = pyro.sample("z", prior_cls(logits=PRIOR))
        pyro.sample("x", pr.OneHotMixture(z, dist.Normal(LOCS, 1.0)), obs=X)


def exact_log_evidence() -> float:
    joint = PRIOR.log_softmax(-1) + dist.Normal(LOCS, 1.0).log_prob(X[:, None])
    return joint.logsumexp(-1).sum().item()


@pytest.mark.parametrize("prior_cls", [pr.OneHotCategorical, *ESTIMATORS])
def test_model_side_enumeration_gives_the_exact_evidence(prior_cls):
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(
        config_enumerate(model), lambda *_: None, prior_cls
    )
    assert -loss == pytest.approx(exact_log_evidence(), rel=1e-12)


def _guide_loss_and_grad(guide_cls):
    logits = GUIDE_LOGITS.clone().requires_grad_()

    def guide():
        with pyro.plate("data", len(X)):
            pyro.sample("z", guide_cls(logits=logits), infer={"enumerate": "parallel"})

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.item(), grad


@pytest.mark.parametrize("guide_cls", ESTIMATORS)
def test_guide_side_enumeration_equals_a_plain_one_hot_guide(guide_cls):
    loss, grad = _guide_loss_and_grad(guide_cls)
    plain_loss, plain_grad = _guide_loss_and_grad(dist.OneHotCategorical)
    assert loss == pytest.approx(plain_loss, rel=1e-12)
    torch.testing.assert_close(grad, plain_grad, rtol=1e-10, atol=1e-12)
    # and that loss is the exact KL(q || posterior) - log p(x)
    q = GUIDE_LOGITS.log_softmax(-1)
    joint = PRIOR.log_softmax(-1) + dist.Normal(LOCS, 1.0).log_prob(X[:, None])
    exact = (q.exp() * (q - joint)).sum().item()
    assert loss == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize(
    "guide_cls",
    [pr.ReinMaxBernoulli, pr.StraightThroughBernoulli, pr.GumbelStraightThroughBernoulli],
)
def test_guide_side_enumeration_of_bernoulli(guide_cls):
    probs = torch.tensor([0.3, 0.8], dtype=torch.float64)

    def bernoulli_model():
        with pyro.plate("data", 2):
            b = pyro.sample(
                "b", dist.Bernoulli(probs=torch.tensor([0.5, 0.5], dtype=torch.float64))
            )
            pyro.sample(
                "x", dist.Normal(2 * b, 1.0), obs=torch.tensor([0.1, 1.9], dtype=torch.float64)
            )

    def make_guide(cls):
        def guide():
            with pyro.plate("data", 2):
                pyro.sample("b", cls(probs=probs), infer={"enumerate": "parallel"})

        return guide

    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    ours = elbo.loss(bernoulli_model, make_guide(guide_cls))
    plain = elbo.loss(bernoulli_model, make_guide(dist.Bernoulli))
    assert ours == pytest.approx(plain, rel=1e-12)
