"""The same properties on a CUDA device; skipped where none is available."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.optim import Adam

import pyro_reinmax as pr
from pyro_reinmax.estimators import RULES
from pyro_reinmax.sampling import draw_exponentials
from reference import FAMILY_OPTIONS, family_grad, noise_shape, reinmax_grad

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICE = "cuda"


@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_backward_matches_formula_on_cuda(temperature):
    logits = torch.randn(64, 7, dtype=torch.float64, device=DEVICE, requires_grad=True)
    sample, probs = pr.reinmax(logits, temperature)
    assert sample.device.type == probs.device.type == "cuda"
    g, h = torch.randn_like(sample), torch.randn_like(probs)
    ((sample * g).sum() + (probs * h).sum()).backward()
    expected = reinmax_grad(
        *(t.detach().cpu().numpy() for t in (logits, sample, g, h)), temperature
    )
    np.testing.assert_allclose(logits.grad.cpu().numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("estimator", [pr.reinmax, pr.straight_through, pr.gumbel_straight_through])
def test_cuda_draws_follow_the_categorical_law(estimator):
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2], device=DEVICE)
    sample, _ = estimator(probs.log().expand(50_000, -1), 1.0)
    counts = sample.sum(0).cpu().double()
    assert counts[1] == 0
    expected = probs.cpu().double()[[0, 2, 3]] * 50_000
    assert scipy.stats.chisquare(counts[[0, 2, 3]].numpy(), expected.numpy()).pvalue > 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_dtypes_and_masks(dtype):
    logits = torch.randn(128, 6, device=DEVICE).to(dtype)
    logits[:, 2] = -torch.inf
    logits.requires_grad_()
    d = pr.ReinMaxOneHotCategorical(logits=logits, temperature=1.3)
    value = d.rsample((3,))
    assert value.dtype == dtype and value[..., 2].sum() == 0
    (value * torch.randn_like(value)).sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[:, 2] == 0).all()


def test_svi_step_on_cuda():
    x = torch.cat([torch.randn(30) - 3, torch.randn(30) + 3]).to(DEVICE)

    def model(x):
        locs = pyro.param("locs", torch.tensor([-1.0, 1.0], device=DEVICE))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(2, device=DEVICE)))
            pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x)

    def guide(x):
        logits = pyro.param("q", torch.zeros(x.shape[0], 2, device=DEVICE))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=logits))

    svi = SVI(model, guide, Adam({"lr": 0.1}), TraceMeanField_ELBO())
    for _ in range(300):
        svi.step(x)
    assert sorted(pyro.param("locs").tolist()) == pytest.approx([-3.0, 3.0], abs=0.7)


@pytest.mark.parametrize("name", list(FAMILY_OPTIONS))
def test_estimator_family_matches_its_formula_on_cuda(name):
    """GST, Gumbel-Rao, ReinMax-Rao, ReinMax-CV on the GPU: the formula on the drawn sample and
    the conditional noise (the CUDA stream replayed)."""
    options = FAMILY_OPTIONS[name]
    logits = torch.randn(32, 5, dtype=torch.float64, device=DEVICE)
    g, h = torch.randn_like(logits), torch.randn_like(logits)
    leaf = logits.clone().requires_grad_()
    torch.manual_seed(4)
    sample, probs = getattr(pr, name)(leaf, 0.8, **options)
    ((sample * g).sum() + (probs * h).sum()).backward()
    torch.manual_seed(4)
    torch.rand((32, 1), dtype=torch.float64, device=DEVICE)
    shape = noise_shape(RULES[name], options, (32, 5))
    noise = None
    if shape is not None:
        noise = draw_exponentials(torch.empty(shape, dtype=torch.float64, device=DEVICE))
    arrays = (
        None if t is None else t.detach().cpu().numpy() for t in (logits, sample, noise, g, h)
    )
    expected = family_grad(name, *arrays, 0.8, options)
    np.testing.assert_allclose(leaf.grad.cpu().numpy(), expected, rtol=1e-9, atol=1e-12)
