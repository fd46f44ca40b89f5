"""OneHotMixture: the linear-in-z mixture likelihood, against per-component densities."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import TraceEnum_ELBO, config_enumerate

import pyro_reinmax as pr

LOCS = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
SCALES = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
X = torch.tensor([-1.2, 0.3, 1.9, 4.0], dtype=torch.float64)


def test_log_prob_is_the_selected_component_density():
    z = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 2]), 3).double()
    d = pr.OneHotMixture(z, dist.Normal(LOCS, SCALES))
    expected = dist.Normal(LOCS[[0, 2, 1, 2]], SCALES[[0, 2, 1, 2]]).log_prob(X)
    torch.testing.assert_close(d.log_prob(X), expected)
    assert d.batch_shape == (4,) and d.event_shape == ()


def test_gradient_in_the_assignment_is_the_component_log_density():
    z = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 2]), 3).double().requires_grad_()
    pr.OneHotMixture(z, dist.Normal(LOCS, SCALES)).log_prob(X).sum().backward()
    torch.testing.assert_close(z.grad, dist.Normal(LOCS, SCALES).log_prob(X[:, None]))


def test_multivariate_components():
    locs = torch.randn(3, 2, dtype=torch.float64)
    components = dist.Normal(locs, 1.0).to_event(1)
    z = torch.nn.functional.one_hot(torch.tensor([1, 0]), 3).double()
    value = torch.randn(2, 2, dtype=torch.float64)
    d = pr.OneHotMixture(z, components)
    assert d.event_shape == (2,) and d.batch_shape == (2,)
    expected = dist.Normal(locs[[1, 0]], 1.0).to_event(1).log_prob(value)
    torch.testing.assert_close(d.log_prob(value), expected)
    torch.testing.assert_close(d.mean, locs[[1, 0]])
    assert d.sample((5,)).shape == (5, 2, 2)


def test_enumerated_assignment_broadcasts():
    z = torch.eye(3, dtype=torch.float64).reshape(3, 1, 3)
    log_prob = pr.OneHotMixture(z, dist.Normal(LOCS, SCALES)).log_prob(X)
    torch.testing.assert_close(log_prob, dist.Normal(LOCS, SCALES).log_prob(X[:, None]).T)


def test_model_enumeration_gives_the_marginal_likelihood():
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)

    @config_enumerate
    def model():
        with pyro.plate("data", 4):
            z = pyro.sample("z", pr.OneHotCategorical(probs=weights))
            pyro.sample("x", pr.OneHotMixture(z, dist.Normal(LOCS, SCALES)), obs=X)

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    marginal = dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(LOCS, SCALES))
    assert -loss == pytest.approx(marginal.log_prob(X).sum().item(), rel=1e-12)


def test_masked_components_and_out_of_support_values():
    components = dist.Uniform(torch.tensor([0.0, 5.0]), torch.tensor([1.0, 6.0]))
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    log_prob = pr.OneHotMixture(z, components, validate_args=False).log_prob(
        torch.tensor([0.5, 0.5])
    )
    assert log_prob[0] == 0.0 and log_prob[1] == -float("inf")
    log_prob[0].backward()
    assert torch.isfinite(z.grad).all()


def test_expand_and_sample_shapes():
    z = torch.eye(3, dtype=torch.float64)[[0, 1]]
    d = pr.OneHotMixture(z, dist.Normal(LOCS, SCALES)).expand((4, 2))
    assert d.batch_shape == (4, 2) and d.sample().shape == (4, 2)
    assert d.log_prob(torch.zeros(4, 2)).shape == (4, 2)


@pytest.mark.parametrize(
    ("assignment", "components", "match"),
    [
        (torch.eye(2), dist.Normal(torch.zeros(3), 1.0), "3 categories"),
        (torch.eye(3), dist.Normal(0.0, 1.0), "batch axis of components"),
    ],
)
def test_shape_errors(assignment, components, match):
    with pytest.raises(ValueError, match=match):
        pr.OneHotMixture(assignment, components)


def test_values_outside_the_component_support_are_refused():
    d = pr.OneHotMixture(torch.eye(2), dist.Exponential(torch.ones(2)), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([-1.0, 1.0]))


def test_categorical_components_are_scored_by_a_gather():
    logits = torch.randn(3, 50, dtype=torch.float64).log_softmax(-1)
    words = torch.randint(0, 50, (7,))
    z = torch.nn.functional.one_hot(torch.randint(0, 3, (7,)), 3).double()
    ours = pr.OneHotMixture(z, dist.Categorical(logits=logits)).log_prob(words)
    torch.testing.assert_close(ours, logits[z.argmax(-1), words])
    enumerated = pr.OneHotMixture(
        torch.eye(3, dtype=torch.float64).reshape(3, 1, 3), dist.Categorical(logits=logits)
    )
    torch.testing.assert_close(enumerated.log_prob(words), logits[:, words])


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, (3, 3), elements=st.sampled_from([0.0, 1.0, 0.5, 2.0, -1.0])))
def test_assignment_must_be_one_hot(assignment):
    """With validation on, a row that is not one-hot (probabilities, a relaxed sample) raises."""
    one_hot = all(sorted(row) == [0.0, 0.0, 1.0] for row in assignment)
    components = dist.Normal(torch.zeros(3, dtype=torch.float64), 1.0)
    if one_hot:
        pr.OneHotMixture(torch.as_tensor(assignment), components)
    else:
        with pytest.raises(ValueError, match="assignment must be one-hot"):
            pr.OneHotMixture(torch.as_tensor(assignment), components)
    pr.OneHotMixture(torch.as_tensor(assignment), components, validate_args=False)
