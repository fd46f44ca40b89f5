"""Enumeration: model-side with the ReinMax classes, and guide-side equal to a plain guide."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate

import pyro_reinmax as pr
from pyro_reinmax.infer import infer_discrete
from reference import chain_posterior

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


# --------------------------------------------------------------- infer_discrete with one-hot sites

CHAIN_INITIAL = np.array([0.5, 0.3, 0.2])
CHAIN_TRANSITION = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
CHAIN_LOCS = np.array([-1.0, 0.5, 2.0])
CHAIN_X = np.array([0.2, 1.1])
COPIES = 3000


def chain_model(cls, copies=COPIES):
    """Two steps of a chain, written select-then-score with one-hot states, in a plate of
    independent copies of the same observations."""
    transition = torch.tensor(CHAIN_TRANSITION)
    locs = torch.tensor(CHAIN_LOCS)
    with pyro.plate("copies", copies):
        z = pyro.sample("z_0", cls(probs=torch.tensor(CHAIN_INITIAL)))
        pyro.sample("x_0", dist.Normal(z @ locs, 1.0), obs=torch.tensor(CHAIN_X[0]))
        z = pyro.sample("z_1", cls(probs=z @ transition))
        pyro.sample("x_1", dist.Normal(z @ locs, 1.0), obs=torch.tensor(CHAIN_X[1]))
    return z


@pytest.mark.parametrize("cls", [dist.OneHotCategorical, pr.OneHotCategorical])
def test_infer_discrete_draws_the_exact_posterior_of_one_hot_sites(cls):
    posterior = chain_posterior(CHAIN_INITIAL, CHAIN_TRANSITION, CHAIN_LOCS, CHAIN_X)
    sampler = infer_discrete(config_enumerate(chain_model), first_available_dim=-2)
    trace = poutine.trace(sampler).get_trace(cls)
    states = [trace.nodes[f"z_{t}"]["value"] for t in range(2)]
    assert all(set(s.sum(-1).tolist()) == {1.0} for s in states)  # one-hot values
    assert torch.equal(trace.nodes["_RETURN"]["value"], states[1])
    joint = (states[0].argmax(-1) * 3 + states[1].argmax(-1)).numpy()
    counts = np.bincount(joint, minlength=9)
    assert scipy.stats.chisquare(counts, posterior.ravel() * COPIES).pvalue > 1e-4
    # temperature 0: the maximum a posteriori configuration
    map_trace = poutine.trace(
        infer_discrete(config_enumerate(chain_model), first_available_dim=-2, temperature=0)
    ).get_trace(cls, copies=1)
    best = np.unravel_index(posterior.argmax(), posterior.shape)
    assert [map_trace.nodes[f"z_{t}"]["value"].argmax(-1).item() for t in range(2)] == list(best)


def test_infer_discrete_refuses_what_it_cannot_draw_from_the_posterior():
    """A one-hot site with extra event dims is left unmarked by ``config_enumerate`` and used to
    keep its prior draw, even at temperature 0; bad options were accepted or failed deep inside."""

    def several_per_point(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(3, 2)).to_event(1))
            pyro.sample("x", dist.Normal((z @ torch.tensor([-3.0, 3.0])).sum(-1), 1.0), obs=x)

    x = torch.tensor([-9.0, 9.0])
    sampler = infer_discrete(config_enumerate(several_per_point), first_available_dim=-2)
    with pytest.raises(ValueError, match=r"site 'z'.*event_dim 1.*in a plate"):
        poutine.trace(sampler).get_trace(x)
    for options, message in [
        ({"first_available_dim": 0}, "negative int"),
        ({"first_available_dim": -2.0}, "negative int"),
        ({"first_available_dim": -2, "temperature": 0.5}, "1 .posterior draws. or 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            infer_discrete(config_enumerate(chain_model), **options)
