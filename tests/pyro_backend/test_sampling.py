"""Samples follow the categorical law exactly (chi-square goodness of fit), are exactly one-hot,
and never hit a masked category."""

import pytest
import scipy.stats
import torch

import pyro_reinmax
from pyro_reinmax.estimators import RULES
from pyro_reinmax.sampling import (
    draw_exponentials,
    draw_index,
    draw_one_hot,
    perturbed_logits_given_index,
)

NUM_DRAWS = 40_000
PROBS = torch.tensor([0.5, 0.2, 0.0, 0.15, 0.1, 0.05, 0.0], dtype=torch.float64)


def _assert_categorical_law(one_hot: torch.Tensor, probs: torch.Tensor) -> None:
    assert set(one_hot.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(one_hot.sum(-1), torch.ones(one_hot.shape[:-1], dtype=one_hot.dtype))
    counts = one_hot.reshape(-1, probs.shape[-1]).sum(0).double()
    assert counts[probs == 0].sum() == 0, "a zero-probability category was drawn"
    observed, expected = counts[probs > 0], probs[probs > 0] * counts.sum()
    if len(observed) < 2:
        return  # a deterministic row: checked above
    p_value = scipy.stats.chisquare(observed.numpy(), expected.numpy()).pvalue
    assert p_value > 1e-4, f"chi-square p = {p_value:.2g}: counts {observed} vs {expected}"


def _logits():
    return PROBS.log().expand(NUM_DRAWS, -1)


def test_draw_one_hot():
    _assert_categorical_law(draw_one_hot(PROBS.expand(NUM_DRAWS, -1)), PROBS)


ESTIMATOR_OPS = [getattr(pyro_reinmax, name) for name in RULES]


@pytest.mark.parametrize("estimator", ESTIMATOR_OPS, ids=lambda e: e.__name__)
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_estimator_draws_ignore_the_temperature(estimator, temperature):
    sample, _ = estimator(_logits(), temperature)
    _assert_categorical_law(sample, PROBS)


ONE_HOT_DRAWS = [(pyro_reinmax.OneHotCategorical, "sample")] + [
    (cls, method)
    for cls in [
        pyro_reinmax.ReinMaxOneHotCategorical,
        pyro_reinmax.StraightThroughOneHotCategorical,
        pyro_reinmax.GumbelStraightThroughOneHotCategorical,
    ]
    for method in ["sample", "rsample"]
]


@pytest.mark.parametrize(("cls", "method"), ONE_HOT_DRAWS)
@pytest.mark.parametrize("parameter", ["probs", "logits"])
def test_distribution_draws(cls, method, parameter):
    d = cls(**{parameter: PROBS if parameter == "probs" else PROBS.log()})
    _assert_categorical_law(getattr(d, method)((NUM_DRAWS,)), PROBS)


@pytest.mark.parametrize(
    "cls",
    [
        pyro_reinmax.ReinMaxBernoulli,
        pyro_reinmax.StraightThroughBernoulli,
        pyro_reinmax.GumbelStraightThroughBernoulli,
    ],
)
@pytest.mark.parametrize("method", ["sample", "rsample"])
def test_bernoulli_draws(cls, method):
    p = torch.tensor([0.0, 0.3, 0.9, 1.0], dtype=torch.float64)
    values = getattr(cls(probs=p), method)((NUM_DRAWS,))
    assert set(values.unique().tolist()) <= {0.0, 1.0}
    for column, probability in zip(values.T, p, strict=True):
        one_hot = torch.stack([1 - column, column], -1)
        _assert_categorical_law(one_hot, torch.stack([1 - probability, probability]))


def test_extreme_logits_are_exact():
    """Logits of +-40 are deterministic in float64 but not exactly: the rare draw stays possible
    in law and the common one is never lost."""
    d = pyro_reinmax.ReinMaxOneHotCategorical(logits=torch.tensor([40.0, -40.0, 0.0]))
    assert (d.rsample((1000,))[:, 0] == 1).all()


# Equal logits this large swamp Gumbel noise in ``logits + G``; the draw must stay exact.
LARGE_EQUAL_LOGITS = [
    (torch.float32, 1e7),
    (torch.float32, 1e30),
    (torch.bfloat16, 100.0),
    (torch.float16, 1000.0),
    (torch.float64, 1e300),
]


@pytest.mark.parametrize(("dtype", "magnitude"), LARGE_EQUAL_LOGITS)
@pytest.mark.parametrize("estimator", ESTIMATOR_OPS, ids=lambda e: e.__name__)
def test_draws_stay_exact_for_large_logits(estimator, dtype, magnitude):
    logits = torch.full((4_000, 3), magnitude, dtype=dtype)
    logits[:, 2] = -float("inf")
    sample, _ = estimator(logits)
    _assert_categorical_law(sample.double(), torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))


def test_perturbed_logits_given_index_follow_gumbel_max():
    """Index by inverse CDF, then ``logits + G`` given it: the pair has Gumbel-max's joint law.
    Pinned by: the argmax is the index, and each unmasked ``z_j - logits_j`` is a standard Gumbel
    (Kolmogorov-Smirnov) once the index is integrated out."""
    logits = PROBS.log().expand(NUM_DRAWS // 4, -1)
    index = draw_index(logits.softmax(-1))
    perturbed = perturbed_logits_given_index(logits, index, draw_exponentials(logits))
    assert torch.equal(perturbed.argmax(-1, keepdim=True), index)
    unmasked = PROBS > 0
    assert torch.isneginf(perturbed[:, ~unmasked]).all()
    for column in (perturbed - logits)[:, unmasked].T:
        assert scipy.stats.kstest(column.numpy(), scipy.stats.gumbel_r.cdf).pvalue > 1e-4
