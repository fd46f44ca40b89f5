"""run_checked: svi.step's losses and parameters when every step is finite; otherwise an error at
the first non-finite step that names it, the parameter and the site, with the parameters left as
they were before it."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import SGD, Adam

from pyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO, run_checked

X = torch.tensor([-2.1, -1.7, 1.9, 2.4, 2.2])


def mixture(x):  # as a NumPyro user writes it: integer sites, parameters selected by indexing
    locs = pyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(torch.ones(2) / 2))
        pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def _fit(run):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(mixture, AutoReinMax(mixture), Adam({"lr": 0.05}), TraceLocalEnum_ELBO())
    losses = run(svi)
    return losses, {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def test_a_finite_run_is_svi_step():
    expected, expected_params = _fit(lambda svi: [svi.step(X) for _ in range(30)])
    losses, params = _fit(lambda svi: run_checked(svi, 30, X, progress_bar=False))
    assert losses == pytest.approx(expected, rel=1e-6)
    assert params.keys() == expected_params.keys()
    for name, value in expected_params.items():
        torch.testing.assert_close(params[name], value)


def spread_model(x):
    scale = pyro.param("scale", torch.tensor(1.0))  # no constraint: a large step makes it < 0
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(0.0, scale), obs=x)


def test_the_first_non_finite_step_is_named_and_the_parameters_kept():
    pyro.clear_param_store()
    svi = SVI(spread_model, lambda x: None, SGD({"lr": 10.0}), TraceLocalEnum_ELBO())
    with pyro.validation_enabled(False), pytest.raises(FloatingPointError) as error:
        run_checked(svi, 5, torch.zeros(3), progress_bar=False)
    message = str(error.value)
    assert "SVI step 1:" in message  # step 0 is finite and moves the scale below 0
    assert "the loss is nan" in message
    assert "model site 'x' (log-density NaN)" in message
    assert "Non-finite gradient in: no parameter" in message  # d log s / ds = 1 / s: finite
    assert pyro.param("scale").item() < 0  # step 0's update, not step 1's NaN
    assert math.isfinite(pyro.param("scale").item())


def test_with_validation_on_the_refusal_is_pyros_own_error():
    pyro.clear_param_store()
    svi = SVI(spread_model, lambda x: None, SGD({"lr": 10.0}), TraceLocalEnum_ELBO())
    with pyro.validation_enabled(True), pytest.raises(ValueError, match="scale"):
        run_checked(svi, 5, torch.zeros(3), progress_bar=False)


def test_an_unbounded_density_is_explained():
    def model(x):
        rate = pyro.param("rate", torch.tensor(1.0), constraint=dist.constraints.positive)
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Gamma(0.5, rate), obs=x)  # unbounded at x = 0

    pyro.clear_param_store()
    svi = SVI(model, lambda x: None, Adam({"lr": 0.1}), TraceLocalEnum_ELBO())
    with pyro.validation_enabled(False), pytest.raises(FloatingPointError) as error:
        run_checked(svi, 5, torch.tensor([0.0, 1.0]), progress_bar=False)
    assert "SVI step 0: the loss is -inf" in str(error.value)
    assert "model site 'x' (log-density +inf: the density is unbounded" in str(error.value)


def exact_annotations(y):
    """Each annotation is its item's true class: any other class has probability 0 (logits of
    -inf: torch's Categorical(probs) would floor a zero probability at its epsilon)."""
    with pyro.plate("item", len(y)):
        c = pyro.sample("c", dist.Categorical(torch.ones(3) / 3))
        logits = torch.where(torch.nn.functional.one_hot(c, 3) == 1, 0.0, -math.inf)
        pyro.sample("y", dist.Categorical(logits=logits), obs=y)


def test_an_elbo_of_minus_infinity_warns_and_run_checked_names_the_impossible_site():
    y = torch.tensor([0, 2, 1, 2])
    pyro.clear_param_store()
    guide = AutoReinMax(exact_annotations)
    svi = SVI(exact_annotations, guide, Adam({"lr": 0.05}), TraceLocalEnum_ELBO())
    with pytest.warns(RuntimeWarning, match="the loss is \\+inf"):
        assert svi.step(y) == math.inf
    with pytest.raises(FloatingPointError) as error:
        run_checked(svi, 3, y, progress_bar=False)
    assert "model site 'y' (log-density -inf: the model gives this value probability 0" in str(
        error.value
    )
    assert "diverged" not in str(error.value)  # not the divergence advice
    pyro.clear_param_store()
    summed = AutoReinMax(exact_annotations, enumerate="auto")
    svi = SVI(exact_annotations, summed, Adam({"lr": 0.05}), TraceLocalEnum_ELBO())
    assert math.isfinite(svi.step(y))  # the remedy the messages give


@pytest.mark.parametrize("num_steps", [0, 2.0, True])
def test_the_number_of_steps_is_checked(num_steps):
    svi = SVI(spread_model, lambda x: None, SGD({"lr": 0.1}), TraceLocalEnum_ELBO())
    with pytest.raises((TypeError, ValueError), match="num_steps must be"):
        run_checked(svi, num_steps, torch.zeros(3), progress_bar=False)
