"""Distribution conformance: one table of cases drives every generic test (Pyro fixture style)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import hypothesis.extra.numpy as hnp
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyro_reinmax as pr
from pyro_reinmax.families import ESTIMATORS
from reinmax_core.rules import RULES as RULE_NAMES

NEG_INF = -float("inf")


@dataclass
class Case:
    cls: type
    params: dict
    temperature: float | None = None
    id: str = field(default="")

    @property
    def is_bernoulli(self) -> bool:
        return issubclass(self.cls, torch.distributions.Bernoulli)

    def make(self, **overrides):
        kwargs = dict(self.params)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        kwargs.update(overrides)
        return self.cls(**kwargs)

    def reference(self):
        """The stock torch distribution with the same law."""
        if self.is_bernoulli:
            return torch.distributions.Bernoulli(**self.params)
        return torch.distributions.Categorical(**self.params)


MASKED_LOGITS = torch.tensor([[0.3, NEG_INF, -1.0, 2.0], [NEG_INF, 0.0, 0.5, NEG_INF]])
PROBS_WITH_ZERO = torch.tensor([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])
# Every case for the first three rules; the other rules share all but their backward with them,
# so each gets its most demanding case (masked categories; probabilities of 0 and 1).
FULL_CASE_RULES = ("reinmax", "straight_through", "gumbel_straight_through")
ONE_HOT = [ESTIMATORS[name][0] for name in FULL_CASE_RULES]
BERNOULLI = [ESTIMATORS[name][1] for name in FULL_CASE_RULES]
OTHER_RULES = [name for name in RULE_NAMES if name not in FULL_CASE_RULES]

CASES = [
    Case(pr.OneHotCategorical, {"logits": torch.randn(3, 4)}, id="exact-logits"),
    Case(pr.OneHotCategorical, {"probs": PROBS_WITH_ZERO}, id="exact-probs-zero"),
    *[Case(c, {"logits": torch.randn(2, 3, 5)}, 1.5, id=f"{c.__name__}-logits") for c in ONE_HOT],
    *[
        Case(c, {"probs": torch.tensor([0.1, 0.6, 0.3])}, 1.0, id=f"{c.__name__}-probs")
        for c in ONE_HOT
    ],
    *[
        Case(c, {"logits": MASKED_LOGITS}, 1.2, id=f"{c.__name__}-masked")
        for c in ONE_HOT + [ESTIMATORS[name][0] for name in OTHER_RULES]
    ],
    *[
        Case(c, {"logits": torch.tensor([0.3, -2.0, 4.0])}, 1.3, id=f"{c.__name__}-logits")
        for c in BERNOULLI
    ],
    *[
        Case(c, {"probs": torch.tensor([[0.0, 0.4], [1.0, 0.7]])}, 1.0, id=f"{c.__name__}-probs")
        for c in BERNOULLI + [ESTIMATORS[name][1] for name in OTHER_RULES]
    ],
]
REPARAMETERIZED = [c for c in CASES if c.cls.has_rsample]


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request) -> Case:
    return request.param


@pytest.fixture(params=REPARAMETERIZED, ids=lambda c: c.id)
def rcase(request) -> Case:
    return request.param


def _parameter(case: Case) -> torch.Tensor:
    return next(iter(case.params.values()))


def _expected_shapes(case: Case):
    param = _parameter(case)
    if case.is_bernoulli:
        return param.shape, torch.Size()
    return param.shape[:-1], param.shape[-1:]


def test_shapes(case):
    d = case.make()
    batch_shape, event_shape = _expected_shapes(case)
    assert d.batch_shape == batch_shape and d.event_shape == event_shape
    for sample_shape in [(), (2,), (2, 3)]:
        assert d.sample(sample_shape).shape == torch.Size(sample_shape) + batch_shape + event_shape
        assert d.log_prob(d.sample(sample_shape)).shape == torch.Size(sample_shape) + batch_shape


def test_infer_shapes(case):
    shapes = {name: value.shape for name, value in case.params.items()}
    if case.temperature is not None:
        shapes["temperature"] = ()
    assert case.cls.infer_shapes(**shapes) == _expected_shapes(case)


def test_samples_lie_in_the_support(case):
    d = case.make()
    assert d.support.check(d.sample((50,))).all()
    if d.has_rsample:
        assert d.support.check(d.rsample((50,))).all()


def test_rsample_carries_gradients_to_the_parameters(rcase):
    param = _parameter(rcase).clone().requires_grad_()
    d = rcase.make(**{next(iter(rcase.params)): param})
    value = d.rsample((20,))
    assert value.requires_grad
    (value * torch.randn(value.shape)).sum().backward()
    assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_expand_keeps_class_and_temperature(case):
    d = case.make()
    batch_shape, event_shape = _expected_shapes(case)
    new_shape = (2,) + batch_shape
    expanded = d.expand(new_shape)
    assert type(expanded) is case.cls
    assert expanded.batch_shape == new_shape
    assert getattr(expanded, "temperature", None) == case.temperature
    assert expanded.sample().shape == new_shape + event_shape
    assert type(expanded.expand((3,) + new_shape)) is case.cls
    value = d.sample()
    torch.testing.assert_close(expanded.log_prob(value), d.log_prob(value).expand(new_shape))


def test_enumerate_support(case):
    d = case.make()
    batch_shape, event_shape = _expected_shapes(case)
    n = event_shape[0] if event_shape else 2
    values = d.enumerate_support(expand=False)
    assert values.shape == (n,) + (1,) * len(batch_shape) + event_shape
    expanded = d.enumerate_support()
    assert expanded.shape == (n,) + batch_shape + event_shape
    total = d.log_prob(values).logsumexp(0)
    torch.testing.assert_close(total, torch.zeros(batch_shape), atol=1e-6, rtol=0)


def test_log_prob_matches_stock_distribution(case):
    d, reference = case.make(), case.reference()
    values = d.enumerate_support()
    indices = values if case.is_bernoulli else values.argmax(-1)
    ours, theirs = d.log_prob(values), reference.log_prob(indices)
    masked = torch.isneginf(ours)
    # torch clamps log(0) to log(eps); ours keeps masked categories at exactly -inf
    assert (theirs[masked] < -15).all()
    torch.testing.assert_close(ours[~masked], theirs[~masked], atol=1e-5, rtol=1e-5)


def test_log_prob_is_differentiable_in_the_value(case):
    d = case.make()
    value = d.sample().requires_grad_()
    d.log_prob(value).sum().backward()
    assert torch.isfinite(value.grad).all()
    if not case.is_bernoulli:
        logits = d.logits
        torch.testing.assert_close(value.grad, logits.masked_fill(torch.isneginf(logits), 0.0))


def test_entropy_and_mean_match_stock_distribution(case):
    d, reference = case.make(), case.reference()
    torch.testing.assert_close(d.entropy(), reference.entropy(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d.mean, reference.probs)


def test_pickling_round_trip(case):
    d = case.make()
    buffer = io.BytesIO()
    torch.save(d, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is case.cls
    assert getattr(loaded, "temperature", None) == case.temperature
    value = d.sample((4,))
    torch.testing.assert_close(loaded.log_prob(value), d.log_prob(value))


def test_repr_shows_the_temperature(rcase):
    assert f"temperature={rcase.temperature}" in repr(rcase.make())


# ---------------------------------------------------------------- validation errors


@pytest.mark.parametrize("cls", [pr.OneHotCategorical, *ONE_HOT])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probs": torch.tensor([0.2, 0.2])}, "sum to 1"),
        ({"probs": torch.tensor([1.2, -0.2])}, "non-negative"),
        ({"probs": torch.tensor([0.5, float("nan")])}, "finite"),
        ({"logits": torch.tensor([0.0, float("nan")])}, "NaN"),
        ({"logits": torch.tensor([0.0, float("inf")])}, r"\+inf"),
        ({"logits": torch.tensor([[0.0, 1.0], [NEG_INF, NEG_INF]])}, "-inf everywhere"),
        ({"logits": torch.zeros(())}, "last axis"),
        ({"logits": torch.zeros(3), "probs": torch.ones(3) / 3}, "exactly one"),
        ({}, "exactly one"),
    ],
)
def test_bad_parameters_are_clear_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [pr.OneHotCategorical, *ONE_HOT])
def test_integer_logits_are_a_type_error(cls):
    with pytest.raises(TypeError, match="floating"):
        cls(logits=torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("cls", ONE_HOT + BERNOULLI)
@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan"), float("inf")])
def test_bad_temperature_is_a_clear_error(cls, temperature):
    with pytest.raises(ValueError, match="temperature"):
        cls(logits=torch.zeros(2), temperature=temperature)


@pytest.mark.parametrize("cls", BERNOULLI)
def test_bad_bernoulli_parameters(cls):
    with pytest.raises(ValueError, match="probs"):
        cls(probs=torch.tensor([1.5]))
    with pytest.raises(ValueError, match="logits"):
        cls(logits=torch.tensor([float("nan")]))


def test_values_outside_the_support_are_refused(case):
    bad = torch.full(case.make().sample().shape, 0.5)
    with pytest.raises(ValueError, match="support"):
        case.make().log_prob(bad)


def test_unnormalised_probs_pass_without_validation():
    d = pr.ReinMaxOneHotCategorical(probs=torch.tensor([2.0, 6.0]), validate_args=False)
    torch.testing.assert_close(d.probs, torch.tensor([0.25, 0.75]))


# ---------------------------------------------------------------- properties (hypothesis)


@st.composite
def _masked_logits(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    batch = draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
    k = draw(st.integers(1, 6))
    values = draw(hnp.arrays("float64", batch + (k,), elements=st.floats(-8, 8, allow_nan=False)))
    mask = draw(hnp.arrays("bool", batch + (k,)))
    mask[..., draw(st.integers(0, k - 1))] = False  # one category per row stays unmasked
    logits = torch.tensor(values, dtype=dtype).masked_fill(torch.tensor(mask), NEG_INF)
    return logits, torch.tensor(mask)


@settings(max_examples=60, deadline=None)
@given(
    _masked_logits(),
    st.sampled_from(ONE_HOT),
    st.floats(0.3, 3.0),
    st.sampled_from([(), (3,)]),
)
def test_property_masked_rsample(logits_and_mask, cls, temperature, sample_shape):
    logits, mask = logits_and_mask
    logits.requires_grad_()
    d = cls(logits=logits, temperature=temperature)
    value = d.rsample(sample_shape)
    assert value.dtype == logits.dtype
    assert torch.equal(value.sum(-1), torch.ones(value.shape[:-1], dtype=value.dtype))
    assert (value * mask).sum() == 0
    log_prob = d.log_prob(value)
    assert torch.isfinite(log_prob).all()
    (log_prob.sum() + (value * torch.randn(value.shape, dtype=value.dtype)).sum()).backward()
    grad = logits.grad
    assert torch.isfinite(grad).all()
    assert (grad[mask] == 0).all()
    torch.testing.assert_close(grad.sum(-1), torch.zeros_like(grad.sum(-1)), atol=1e-4, rtol=0)
    kl = torch.distributions.kl_divergence(d, d)
    torch.testing.assert_close(kl, torch.zeros_like(kl), atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 1.6])
def test_bernoulli_backward_is_the_two_category_rule(temperature):
    """ReinMax: (2 a (1 - a) - s (1 - s) / 2) g with a = (sigmoid(l / tau) + b) / 2, s = sigmoid(l);
    straight-through: sigmoid'(l / tau) g / tau."""
    logits = torch.tensor([-2.0, -0.3, 0.5, 1.7], dtype=torch.float64)
    g = torch.tensor([0.7, -1.2, 0.4, 2.0], dtype=torch.float64)
    s, s_tau = torch.sigmoid(logits), torch.sigmoid(logits / temperature)
    for cls in [pr.ReinMaxBernoulli, pr.StraightThroughBernoulli]:
        leaf = logits.clone().requires_grad_()
        b = cls(logits=leaf, temperature=temperature).rsample()
        (b * g).sum().backward()
        if cls is pr.ReinMaxBernoulli:
            a = (s_tau + b.detach()) / 2
            expected = (2 * a * (1 - a) - s * (1 - s) / 2) * g
        else:
            expected = s_tau * (1 - s_tau) * g / temperature
        torch.testing.assert_close(leaf.grad, expected, rtol=1e-12, atol=1e-12)
