"""GST, Gumbel-Rao, ReinMax-Rao and ReinMax-CV: the backward against the published formula on the
drawn sample and the same conditional noise (NumPy references, log-domain Gumbel draws), masks,
dtypes, extreme temperatures and logits, second derivatives, and their options."""

import numpy as np
import pytest
import torch

import pyro_reinmax
from pyro_reinmax.estimators import RULES
from pyro_reinmax.families import ESTIMATORS
from pyro_reinmax.sampling import draw_exponentials
from reference import FAMILY_OPTIONS, family_grad, noise_shape

FAMILY = list(FAMILY_OPTIONS)


def _numpy(*tensors, dtype=None) -> list:
    """NumPy copies (in ``dtype`` if given); None (no noise) stays None."""
    return [None if t is None else t.to(dtype or t.dtype).numpy() for t in tensors]


def _run(name, logits, temperature, options, seed=0, use_probs=True):
    """The estimator's gradient, its draw, and the exponentials its forward pass drew (the same
    random stream replayed: one uniform per row, then the noise)."""
    leaf = logits.detach().clone().requires_grad_()
    generator = torch.Generator().manual_seed(seed + 100)
    g = torch.randn(logits.shape, dtype=torch.float64, generator=generator).to(logits.dtype)
    h = torch.randn(logits.shape, dtype=torch.float64, generator=generator).to(logits.dtype)
    h = h if use_probs else torch.zeros_like(h)
    torch.manual_seed(seed)
    sample, probs = getattr(pyro_reinmax, name)(leaf, temperature, **options)
    ((sample * g).sum() + (probs * h).sum()).backward()
    torch.manual_seed(seed)
    torch.rand(logits.shape[:-1] + (1,), dtype=torch.float64)
    shape = noise_shape(RULES[name], options, logits.shape)
    noise = None if shape is None else draw_exponentials(torch.empty(shape, dtype=logits.dtype))
    return leaf.grad, sample.detach(), noise, g, h


@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("shape", [(5,), (3, 4)])
@pytest.mark.parametrize("name", FAMILY)
def test_backward_matches_formula_on_drawn_sample_and_noise(name, shape, temperature):
    logits = torch.randn(shape, dtype=torch.float64) * 1.5
    options = FAMILY_OPTIONS[name]
    grad, sample, noise, g, h = _run(name, logits, temperature, options)
    expected = family_grad(name, *_numpy(logits, sample, noise, g, h), temperature, options)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", FAMILY)
def test_defaults_are_the_documented_ones(name):
    """Called without options, the rule uses its table's defaults (the formula with them)."""
    logits = torch.randn(4, 3, dtype=torch.float64)
    defaults = dict(RULES[name].options)
    grad, sample, noise, g, h = _run(name, logits, 1.0, {})
    if name == "reinmax_cv":
        defaults["cv_temperature"] = 1.0
    expected = family_grad(name, *_numpy(logits, sample, noise, g, h), 1.0, defaults)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", FAMILY)
def test_masked_categories_never_drawn_and_finite_gradients(name):
    logits = torch.randn(3000, 6, dtype=torch.float64)
    logits[:, [0, 3, 5]] = -torch.inf
    grad, sample, *_ = _run(name, logits, 1.2, FAMILY_OPTIONS[name])
    assert sample[:, [0, 3, 5]].sum() == 0 and (sample[:, [1, 2, 4]].sum(0) > 0).all()
    assert torch.isfinite(grad).all() and (grad[:, [0, 3, 5]] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", FAMILY)
def test_dtypes(name, dtype):
    logits = torch.randn(64, 5).to(dtype)
    grad, sample, *_ = _run(name, logits, 1.3, FAMILY_OPTIONS[name])
    assert sample.dtype == grad.dtype == dtype
    assert torch.equal(sample.sum(-1), torch.ones(64, dtype=dtype))
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("temperature", [1e-39, 1e-300])
@pytest.mark.parametrize("name", FAMILY)
def test_temperature_below_the_float32_range_gives_finite_gradients(name, temperature):
    options = dict(FAMILY_OPTIONS[name])
    if "cv_temperature" in options:
        options["cv_temperature"] = temperature
    grad, *_ = _run(name, torch.randn(5, 4), temperature, options)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("temperature", [1.0, 1e-3])
@pytest.mark.parametrize("name", FAMILY)
def test_huge_finite_logits(name, temperature):
    """Logits of 1e30 in float32: the same gradient as the float64 formula."""
    logits = torch.tensor([[1e30, -1e30, 0.0], [3e38, 1e38, -3e38]], dtype=torch.float32)
    options = FAMILY_OPTIONS[name]
    grad, sample, noise, g, h = _run(name, logits, temperature, options)
    as64 = _numpy(logits, sample, noise, g, h, dtype=torch.float64)
    expected = family_grad(name, *as64, temperature, options)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", [*FAMILY, "gumbel_straight_through"])
def test_second_derivative_is_that_of_the_estimated_gradient(name, masked):
    """create_graph=True differentiates the estimate at the fixed draw and noise: checked
    against central differences of the estimate (the same seed: the same draw and noise); finite
    with a masked category too."""
    logits = torch.randn(3, 4, dtype=torch.float64)
    if masked:
        logits[:, 1] = -torch.inf
    v, g = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)

    def estimated(x, create_graph=False):
        torch.manual_seed(5)
        sample, _ = getattr(pyro_reinmax, name)(x, 0.8, **FAMILY_OPTIONS.get(name, {}))
        (grad,) = torch.autograd.grad((sample * g).sum(), x, create_graph=create_graph)
        return grad

    leaf = logits.clone().requires_grad_()
    (second,) = torch.autograd.grad((estimated(leaf, True) * v).sum(), leaf)
    step, numeric = 1e-6, torch.zeros_like(logits)
    for i in np.ndindex(*logits.shape):
        shifted = [logits.clone(), logits.clone()]
        shifted[0][i] += step
        shifted[1][i] -= step
        up, down = (estimated(x.requires_grad_()) for x in shifted)
        numeric[i] = ((up - down) * v).sum() / (2 * step)
    np.testing.assert_allclose(second.numpy(), numeric.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("gumbel_rao", {"samples": 0}, ValueError, "samples must be an integer >= 1"),
        ("gumbel_rao", {"samples": 2.5}, ValueError, "samples must be an integer >= 1"),
        ("gapped_straight_through", {"gap": -1.0}, ValueError, "gap must be >= 0"),
        ("gapped_straight_through", {"gap": float("nan")}, ValueError, "gap must be a finite"),
        ("reinmax_cv", {"eta": float("inf")}, ValueError, "eta must be a finite"),
        ("reinmax_cv", {"cv_temperature": 0.0}, ValueError, "temperature must be a finite"),
    ],
)
def test_bad_options_are_clear_errors(name, options, error, match):
    with pytest.raises(error, match=match):
        getattr(pyro_reinmax, name)(torch.zeros(2, 3), **options)


def test_an_option_the_rule_does_not_take_is_refused():
    with pytest.raises(TypeError, match="takes no option 'samples'"):
        pyro_reinmax.ReinMaxOneHotCategorical(logits=torch.zeros(3), samples=4)
    with pytest.raises(TypeError, match=r"its options: gap"):
        pyro_reinmax.GappedStraightThroughBernoulli(logits=torch.zeros(3), eta=1.0)


@pytest.mark.parametrize("name", FAMILY)
def test_distributions_pass_their_options_to_the_backward(name):
    """``rsample`` of the one-hot class, and of an expanded one, and the integer class's one-hot
    draw, equal the functional op with the same options and the same seed."""
    one_hot_class, _, integer_class = ESTIMATORS[name]
    logits = torch.randn(4, dtype=torch.float64)
    options = FAMILY_OPTIONS[name]
    weights = torch.randn(3, 4, dtype=torch.float64)
    grads = []
    for make in (
        lambda x: one_hot_class(logits=x.expand(3, 4), temperature=0.9, **options).rsample(),
        lambda x: one_hot_class(logits=x, temperature=0.9, **options).expand((3,)).rsample(),
        lambda x: integer_class(logits=x, temperature=0.9, **options).one_hot_rsample((3,)),
        lambda x: getattr(pyro_reinmax, name)(x.expand(3, 4), 0.9, **options)[0],
    ):
        leaf = logits.clone().requires_grad_()
        torch.manual_seed(2)
        (make(leaf) * weights).sum().backward()
        grads.append(leaf.grad)
    for grad in grads[:-1]:
        torch.testing.assert_close(grad, grads[-1], rtol=1e-12, atol=1e-14)
