"""The functional estimators: backward against the published formulas on the drawn sample."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import reinmax as reference_package
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import pyro_reinmax
from pyro_reinmax.sampling import draw_exponentials, draw_index
from reference import (
    gumbel_given_argmax,
    gumbel_straight_through_grad,
    reinmax_grad,
    softmax,
    straight_through_grad,
)

FORMULAS = {
    pyro_reinmax.reinmax: reinmax_grad,
    pyro_reinmax.straight_through: straight_through_grad,
}


def _logits(shape, contiguous=True):
    if contiguous:
        return torch.randn(shape, dtype=torch.float64) * 1.5
    # every other column of a wider tensor: non-contiguous memory
    base = torch.randn(shape[:-1] + (2 * shape[-1],), dtype=torch.float64) * 1.5
    logits = base[..., ::2]
    assert not logits.is_contiguous()
    return logits


def _backward(estimator, logits, temperature, use_probs):
    logits = logits.detach().requires_grad_()
    sample, probs = estimator(logits, temperature)
    g = torch.randn(sample.shape, dtype=torch.float64)
    h = torch.randn(sample.shape, dtype=torch.float64) if use_probs else torch.zeros_like(g)
    loss = (sample * g).sum() + ((probs * h).sum() if use_probs else 0)
    (grad,) = torch.autograd.grad(loss, logits)
    return sample.detach(), probs.detach(), g, h, grad


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 6)])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 1.7])
@pytest.mark.parametrize("use_probs", [False, True])
@pytest.mark.parametrize("estimator", list(FORMULAS), ids=lambda e: e.__name__)
def test_backward_matches_formula_on_drawn_sample(
    estimator, shape, contiguous, temperature, use_probs
):
    logits = _logits(shape, contiguous)
    sample, probs, g, h, grad = _backward(estimator, logits, temperature, use_probs)
    expected = FORMULAS[estimator](
        logits.numpy(), sample.numpy(), g.numpy(), h.numpy(), temperature
    )
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(probs.numpy(), F.softmax(logits, -1).numpy(), rtol=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
@pytest.mark.parametrize("use_probs", [False, True])
def test_gumbel_straight_through_matches_formula(temperature, use_probs):
    logits = _logits((6, 5))
    torch.manual_seed(3)
    sample, _, g, h, grad = _backward(
        pyro_reinmax.gumbel_straight_through, logits, temperature, use_probs
    )
    torch.manual_seed(3)  # the same random stream: one uniform per row, then the exponentials
    torch.rand((6, 1), dtype=torch.float64)
    exponentials = draw_exponentials(logits)
    perturbed = gumbel_given_argmax(logits.numpy(), sample.argmax(-1).numpy(), exponentials)
    assert np.array_equal(perturbed.argmax(-1), sample.argmax(-1).numpy())
    soft = torch.as_tensor(softmax(perturbed / temperature))
    expected = gumbel_straight_through_grad(
        soft.numpy(), logits.numpy(), g.numpy(), h.numpy(), temperature
    )
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 1.3])
@pytest.mark.parametrize("shape", [(7, 4), (2, 3, 5)])
def test_parity_with_reference_package(monkeypatch, temperature, shape):
    """Same sample, same upstream gradients: ours equals `reinmax.reinmax` (its own backward)."""
    logits = _logits(shape)
    sample, _, g, h, grad = _backward(pyro_reinmax.reinmax, logits, temperature, True)
    index = sample.argmax(-1).reshape(-1, 1)
    monkeypatch.setattr(torch, "multinomial", lambda probs, num_samples, replacement: index)
    leaf = logits.detach().requires_grad_()
    ref_sample, ref_probs = reference_package.reinmax(leaf, temperature)
    assert torch.equal(ref_sample, sample)
    ((ref_sample * g).sum() + (ref_probs * h).sum()).backward()
    torch.testing.assert_close(leaf.grad, grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("estimator", list(FORMULAS) + [pyro_reinmax.gumbel_straight_through])
@pytest.mark.parametrize("temperature", [1.0, 1.5])
def test_masked_categories_never_drawn_and_finite_gradients(estimator, temperature):
    logits = torch.randn(4000, 6, dtype=torch.float64)
    logits[:, [0, 3, 5]] = -torch.inf
    logits.requires_grad_()
    sample, _ = estimator(logits, temperature)
    assert sample[:, [0, 3, 5]].sum() == 0
    assert (sample[:, [1, 2, 4]].sum(0) > 0).all()
    (sample * torch.randn(6, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[:, [0, 3, 5]] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("estimator", list(FORMULAS) + [pyro_reinmax.gumbel_straight_through])
def test_dtypes(estimator, dtype):
    logits = torch.randn(64, 5).to(dtype).requires_grad_()
    sample, probs = estimator(logits, 1.3)
    assert sample.dtype == probs.dtype == dtype
    assert torch.equal(sample.sum(-1), torch.ones(64, dtype=dtype))
    (sample * torch.arange(5.0).to(dtype)).sum().backward()
    assert logits.grad.dtype == dtype and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), torch.ones(2)])
def test_bad_temperature_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="temperature"):
        pyro_reinmax.reinmax(torch.zeros(3), bad)


def test_temperature_type_error():
    with pytest.raises(TypeError, match="temperature"):
        pyro_reinmax.reinmax(torch.zeros(3), "1.0")


def test_no_gradient_reaches_the_temperature():
    temperature = torch.tensor(1.5, requires_grad=True)
    logits = torch.randn(3, 4, requires_grad=True)
    sample, _ = pyro_reinmax.reinmax(logits, temperature)
    (sample * torch.randn(3, 4)).sum().backward()
    assert temperature.grad is None and logits.grad is not None


@pytest.mark.parametrize(
    "values", [[0.0, float("nan")], [0.0, float("inf")], [-float("inf"), -float("inf")]]
)
def test_bad_logits_are_a_clear_error_when_validating(values):
    with pytest.raises(ValueError, match="logits"):
        pyro_reinmax.reinmax(torch.tensor([[0.0, 1.0], values]))


def test_bad_logits_do_not_crash_without_validation():
    torch.distributions.Distribution.set_default_validate_args(False)
    sample, probs = pyro_reinmax.reinmax(torch.tensor([[0.0, float("nan")], [0.0, 1.0]]))
    assert torch.isnan(probs[0]).all() and sample.sum() == 2


def _surrogate_gradient(logits, sample, g, temperature):
    """The ReinMax formula written with plain torch ops, the draw held fixed."""

    def jvp(p, v):
        return p * v - p * (p * v).sum(-1, keepdim=True)

    pi0 = logits.softmax(-1)
    pi1 = ((logits / temperature).softmax(-1) + sample) / 2
    return 2 * jvp(pi1, g) - 0.5 * jvp(pi0, g)


@pytest.mark.parametrize("temperature", [1.0, 1.4])
def test_second_derivative_is_that_of_the_estimated_gradient(temperature):
    logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, dtype=torch.float64)
    v = torch.randn(3, 5, dtype=torch.float64)
    sample, _ = pyro_reinmax.reinmax(logits, temperature)
    (grad,) = torch.autograd.grad((sample * g).sum(), logits, create_graph=True)
    (second,) = torch.autograd.grad((grad * v).sum(), logits)
    leaf = logits.detach().requires_grad_()
    expected = _surrogate_gradient(leaf, sample.detach(), g, temperature)
    torch.testing.assert_close(grad.detach(), expected.detach(), rtol=1e-12, atol=1e-12)
    (expected_second,) = torch.autograd.grad((expected * v).sum(), leaf)
    torch.testing.assert_close(second, expected_second, rtol=1e-10, atol=1e-12)


def test_drop_in_for_hard_gumbel_softmax():
    logits = torch.randn(8, 3, requires_grad=True)
    sample, _ = pyro_reinmax.reinmax(logits)
    hard = F.gumbel_softmax(logits, hard=True)
    assert sample.shape == hard.shape and sample.dtype == hard.dtype
    assert sample.grad_fn is not None


def test_draw_index_keeps_u_below_the_total(monkeypatch):
    """A uniform that rounds up to the row total must not leak mass to a masked last category."""
    probs = torch.tensor([[0.25, 0.75, 0.0], [0.5, 0.5, 0.0]])
    for u in [1.0, float(np.nextafter(1.0, 0.0))]:
        monkeypatch.setattr(torch, "rand", lambda shape, u=u, **kw: torch.full(shape, u, **kw))
        assert draw_index(probs).flatten().tolist() == [1, 1]


def test_non_contiguous_input_is_supported_where_the_reference_package_fails():
    logits = torch.randn(2, 5, 4).transpose(0, 1)
    with pytest.raises(RuntimeError, match="view"):
        reference_package.reinmax(logits, 1.0)
    sample, _ = pyro_reinmax.reinmax(logits)
    assert sample.shape == (5, 2, 4)


ALL_FORMULAS = {
    **FORMULAS,
    pyro_reinmax.gumbel_straight_through: None,  # formula needs the noise: checked for finiteness
}


@settings(max_examples=40, deadline=None)
@given(
    logits=hnp.arrays(np.float64, (3, 4), elements=st.floats(-10, 10)),
    log10_temperature=st.floats(-290, 1),
    estimator=st.sampled_from(list(FORMULAS)),
)
def test_any_positive_temperature_gives_the_formula(logits, log10_temperature, estimator):
    """A tiny temperature is the one-hot limit of softmax(logits / tau), not NaN."""
    temperature = 10.0**log10_temperature
    sample, _, g, h, grad = _backward(estimator, torch.as_tensor(logits), temperature, True)
    expected = FORMULAS[estimator](logits, sample.numpy(), g.numpy(), h.numpy(), temperature)
    assert torch.isfinite(grad).all()
    scale = max(1.0, float(np.abs(expected).max()))  # entries cancel at the scale of the largest
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.parametrize("temperature", [1e-39, 1e-300])
@pytest.mark.parametrize("estimator", list(ALL_FORMULAS), ids=lambda e: e.__name__)
def test_float32_temperature_below_the_dtype_range(estimator, temperature):
    """1 / tau overflows float32: the gradient stays finite, the float64 formula's where known."""
    logits = _logits((5, 4)).float()
    sample, _, g, h, grad = _backward(estimator, logits, temperature, True)
    assert torch.isfinite(grad).all()
    if ALL_FORMULAS[estimator] is not None:
        expected = ALL_FORMULAS[estimator](
            logits.double().numpy(), sample.numpy(), g.numpy(), h.numpy(), temperature
        )
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 1.3, 1e-3])
@pytest.mark.parametrize("estimator", list(FORMULAS), ids=lambda e: e.__name__)
def test_huge_finite_logits(estimator, temperature):
    logits = torch.tensor([[1e30, -1e30, 0.0], [3e38, 1e38, -3e38]], dtype=torch.float32)
    sample, _, g, h, grad = _backward(estimator, logits, temperature, True)
    expected = FORMULAS[estimator](
        logits.double().numpy(), sample.numpy(), g.numpy(), h.numpy(), temperature
    )
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("logits", "error"),
    [
        (torch.zeros(3, 0), "last axis of categories"),
        (torch.tensor(1.0), "last axis of categories"),
        (torch.tensor([1, 2]), "floating-point"),
    ],
    ids=["no-categories", "0-d", "integer"],
)
@pytest.mark.parametrize("estimator", list(ALL_FORMULAS), ids=lambda e: e.__name__)
def test_logits_without_categories_or_float_dtype_are_refused(estimator, logits, error):
    with pytest.raises((ValueError, TypeError), match=error):
        estimator(logits)


def test_tau_keyword_of_the_reference_package():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    (pyro_reinmax.reinmax(logits, tau=1.4)[0] * torch.arange(3.0)).sum().backward()
    by_keyword, logits.grad = logits.grad, None
    torch.manual_seed(1)
    (pyro_reinmax.reinmax(logits, 1.4)[0] * torch.arange(3.0)).sum().backward()
    assert torch.equal(by_keyword, logits.grad)
    with pytest.raises(TypeError, match="both temperature and tau"):
        pyro_reinmax.reinmax(logits, 1.2, tau=1.4)
