"""Options of the wrong type or range are refused at construction, in both backends alike, with a
message that names the option (a float or a bool budget used to run as a budget of 1, and
``num_particles=0`` returned a loss of -0.0, or NaN in NumPyro)."""

import pyro
import pyro.distributions as pdist
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import numpyro_reinmax.infer as numpyro_infer
import pyro_reinmax.infer as pyro_infer
from reinmax_core.options import check_count, check_max_configurations


def pyro_model():
    pyro.sample("z", pdist.Categorical(torch.ones(3) / 3))


def numpyro_model():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist

    numpyro.sample("z", ndist.Categorical(jnp.ones(3) / 3))


BACKENDS = [(pyro_infer, pyro_model), (numpyro_infer, numpyro_model)]


@pytest.mark.parametrize(("infer", "model"), BACKENDS, ids=["pyro", "numpyro"])
@pytest.mark.parametrize(
    ("budget", "error"), [(1.5, TypeError), (True, TypeError), ("4096", TypeError), (0, ValueError)]
)
def test_a_bad_enumeration_budget_is_refused(infer, model, budget, error):
    with pytest.raises(error, match="max_configurations"):
        infer.AutoReinMax(model, enumerate="auto", max_configurations=budget)


@pytest.mark.parametrize(("infer", "model"), BACKENDS, ids=["pyro", "numpyro"])
@pytest.mark.parametrize(("count", "error"), [(0, ValueError), (-2, ValueError), (1.0, TypeError)])
def test_a_bad_particle_count_is_refused(infer, model, count, error):
    with pytest.raises(error, match="num_particles"):
        infer.TraceLocalEnum_ELBO(num_particles=count)


@pytest.mark.parametrize(("infer", "model"), BACKENDS, ids=["pyro", "numpyro"])
def test_the_removed_budget_of_the_elbo_says_where_it_went(infer, model):
    with pytest.raises(TypeError, match=r'AutoReinMax\(model, enumerate="auto"'):
        infer.TraceLocalEnum_ELBO(max_configurations=64)


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_integer_options_are_kept_exactly_or_refused_by_range(value):
    if value >= 1:
        assert check_max_configurations(value) == value == check_count("n", value)
    else:
        with pytest.raises(ValueError):
            check_max_configurations(value)
        with pytest.raises(ValueError):
            check_count("n", value)
