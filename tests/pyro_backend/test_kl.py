"""Analytic KL divergences: their values, and that TraceMeanField_ELBO really uses them."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import kl_divergence

import pyro_reinmax as pr
from reference import BERNOULLI_PRIORS, bernoulli_kl, bernoulli_pair_from_logit, softmax

ONE_HOT_CLASSES = [
    pr.OneHotCategorical,
    pr.ReinMaxOneHotCategorical,
    pr.StraightThroughOneHotCategorical,
    pr.GumbelStraightThroughOneHotCategorical,
]
STOCK_ONE_HOT = [torch.distributions.OneHotCategorical, dist.OneHotCategorical]
BERNOULLI_CLASSES = [
    pr.ReinMaxBernoulli,
    pr.StraightThroughBernoulli,
    pr.GumbelStraightThroughBernoulli,
]


def _numpy_kl(p_logits, q_logits):
    p, q = softmax(p_logits), softmax(q_logits)
    return np.sum(p * (np.log(p) - np.log(q)), -1)


ONE_HOT_PAIRS = [
    (p, q)
    for p in ONE_HOT_CLASSES + STOCK_ONE_HOT
    for q in ONE_HOT_CLASSES + STOCK_ONE_HOT
    if p in ONE_HOT_CLASSES or q in ONE_HOT_CLASSES
]


@pytest.mark.parametrize(("p_cls", "q_cls"), ONE_HOT_PAIRS)
def test_one_hot_kl_values(p_cls, q_cls):
    p_logits, q_logits = (
        torch.randn(4, 5, dtype=torch.float64),
        torch.randn(4, 5, dtype=torch.float64),
    )
    kl = kl_divergence(p_cls(logits=p_logits), q_cls(logits=q_logits))
    np.testing.assert_allclose(
        kl.numpy(), _numpy_kl(p_logits.numpy(), q_logits.numpy()), rtol=1e-12
    )


@pytest.mark.parametrize("p_cls", [*BERNOULLI_CLASSES, dist.Bernoulli])
@pytest.mark.parametrize("q_cls", [*BERNOULLI_CLASSES, dist.Bernoulli])
def test_bernoulli_kl_values(p_cls, q_cls):
    p_logits, q_logits = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    kl = kl_divergence(p_cls(logits=p_logits), q_cls(logits=q_logits))
    pair = lambda logits: np.stack([np.zeros(6), logits.numpy()], -1)  # noqa: E731
    np.testing.assert_allclose(kl.numpy(), _numpy_kl(pair(p_logits), pair(q_logits)), rtol=1e-10)


def test_masked_kl_is_finite_with_finite_gradients():
    p_logits = torch.tensor([0.3, -float("inf"), 1.0], requires_grad=True)
    q_logits = torch.tensor([0.1, 0.2, -0.5], requires_grad=True)
    q = pr.OneHotCategorical(logits=q_logits)
    kl = kl_divergence(pr.ReinMaxOneHotCategorical(logits=p_logits), q)
    kl.backward()
    p = softmax(np.array([0.3, 1.0]))
    expected = np.sum(p * (np.log(p) - q.logits.detach().numpy()[[0, 2]]))
    np.testing.assert_allclose(kl.item(), expected, rtol=1e-6)
    assert torch.isfinite(p_logits.grad).all() and torch.isfinite(q_logits.grad).all()
    # torch's own registration gives NaN gradients on the same input
    p_stock = torch.tensor([0.3, -float("inf"), 1.0], requires_grad=True)
    kl_divergence(
        torch.distributions.OneHotCategorical(logits=p_stock),
        torch.distributions.OneHotCategorical(logits=q_logits.detach()),
    ).backward()
    assert torch.isnan(p_stock.grad).any()


def test_kl_is_infinite_where_q_masks_a_category_p_uses():
    kl = kl_divergence(
        pr.ReinMaxOneHotCategorical(logits=torch.tensor([0.0, 0.0])),
        pr.OneHotCategorical(logits=torch.tensor([0.0, -float("inf")])),
    )
    assert kl.item() == float("inf")


def _mean_field_losses(model, guide, repeats=4):
    elbo = TraceMeanField_ELBO(max_plate_nesting=2)
    return [elbo.loss(model, guide) for _ in range(repeats)]


PRIOR_LOGITS = torch.tensor([[0.5, -1.0, 0.2], [0.0, 0.3, -0.3]], dtype=torch.float64)
GUIDE_LOGITS = torch.tensor([[1.5, 0.0, -2.0], [0.1, 0.2, 0.3]], dtype=torch.float64)


def _expected_kl_sum():
    return float(_numpy_kl(GUIDE_LOGITS.numpy(), PRIOR_LOGITS.numpy()).sum())


@pytest.mark.parametrize("prior_cls", [pr.OneHotCategorical, dist.OneHotCategorical])
@pytest.mark.parametrize("guide_cls", ONE_HOT_CLASSES[1:])
@pytest.mark.parametrize("layout", ["plate", "expand", "to_event"])
def test_trace_mean_field_uses_the_analytic_kl(prior_cls, guide_cls, layout):
    """With no observation, the mean-field loss is exactly the KL on every call: a Monte Carlo
    fallback would vary from call to call."""

    def site(d, name="z"):
        if layout == "plate":
            with pyro.plate("rows", 2):
                return pyro.sample(name, d)
        if layout == "expand":
            return pyro.sample(name, d.expand([3, 2]).to_event(2))
        return pyro.sample(name, d.to_event(1))

    def model():
        site(prior_cls(logits=PRIOR_LOGITS))

    def guide():
        site(guide_cls(logits=GUIDE_LOGITS, temperature=1.3))

    expected = _expected_kl_sum() * (3 if layout == "expand" else 1)
    for loss in _mean_field_losses(model, guide):
        assert loss == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("guide_cls", BERNOULLI_CLASSES)
def test_trace_mean_field_uses_the_bernoulli_kl(guide_cls):
    prior, posterior = torch.tensor([0.2, 0.7]), torch.tensor([0.9, 0.4])

    def model():
        with pyro.plate("rows", 2):
            pyro.sample("b", dist.Bernoulli(probs=prior))

    def guide():
        with pyro.plate("rows", 2):
            pyro.sample("b", guide_cls(probs=posterior))

    expected = float(kl_divergence(dist.Bernoulli(posterior), dist.Bernoulli(prior)).sum())
    for loss in _mean_field_losses(model, guide):
        assert loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("parameter", "value", "prior_pair"), BERNOULLI_PRIORS)
@pytest.mark.parametrize("touch_the_other", [False, True])
@pytest.mark.parametrize("guide_cls", BERNOULLI_CLASSES)
def test_bernoulli_kl_does_not_depend_on_lazily_computed_parameters(
    guide_cls, parameter, value, prior_pair, touch_the_other
):
    prior = dist.Bernoulli(**{parameter: torch.tensor(value, dtype=torch.float64)})
    if touch_the_other:
        getattr(prior, "probs" if parameter == "logits" else "logits")
    guide = guide_cls(logits=torch.tensor(0.3, dtype=torch.float64))
    guide_pair = bernoulli_pair_from_logit(0.3)
    forward = kl_divergence(guide, prior).item()
    backward = kl_divergence(prior, guide).item()
    np.testing.assert_allclose(forward, bernoulli_kl(guide_pair, prior_pair), rtol=1e-9)
    np.testing.assert_allclose(backward, bernoulli_kl(prior_pair, guide_pair), rtol=1e-9)


@pytest.mark.parametrize("touch_the_other", [False, True])
@pytest.mark.parametrize("stock_cls", STOCK_ONE_HOT)
def test_one_hot_kl_keeps_zero_probabilities_of_stock_priors(stock_cls, touch_the_other):
    """torch's OneHotCategorical(probs=...) clamps log(0) at log(eps); the KL must stay inf."""
    prior = stock_cls(probs=torch.tensor([0.75, 0.25, 0.0], dtype=torch.float64))
    if touch_the_other:
        assert torch.isfinite(prior.logits).all()  # computed lazily and kept
    guide = pr.ReinMaxOneHotCategorical(logits=torch.zeros(3, dtype=torch.float64))
    assert kl_divergence(guide, prior).item() == float("inf")
    expected = 0.75 * np.log(0.75 * 3) + 0.25 * np.log(0.25 * 3)
    np.testing.assert_allclose(kl_divergence(prior, guide).item(), expected, rtol=1e-12)
