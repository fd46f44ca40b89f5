"""A property-based pass over the public constructors and ELBO options of both backends: every
value is either accepted (and kept) or refused with a ``TypeError``/``ValueError`` that names
the argument, the same way in Pyro and NumPyro; never another exception, never a silent
acceptance of a value outside the documented range."""

import math
from numbers import Integral, Real

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import numpyro_reinmax
import pyro_reinmax
from numpyro_reinmax import infer as numpyro_infer
from pyro_reinmax import infer as pyro_infer

BACKENDS = {"pyro": pyro_infer, "numpyro": numpyro_infer}
ESTIMATORS = sorted(pyro_reinmax.families.ESTIMATORS)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from([*ESTIMATORS, "auto", "Reinmax", "auto "]),
    st.lists(st.just("z"), max_size=2),
)


def model(*args, **kwargs):  # never run: construction only
    raise AssertionError("the constructor ran the model")


def valid_temperature(value) -> bool:
    return (
        isinstance(value, Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def valid_count(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def outcome(build):
    try:
        build()
    except (TypeError, ValueError) as error:
        return "refused", str(error)
    return "accepted", ""


def check(results: dict, expected: bool, invalid: list[str]) -> None:
    """Both backends accept exactly the valid values, and a refusal names an invalid argument
    (which one, where several are, may differ: the checks run in each constructor's order)."""
    for kind, message in results.values():
        assert (kind == "accepted") == expected, results
        assert kind == "accepted" or any(name in message for name in invalid), results


@settings(max_examples=150, deadline=None)
@given(
    estimator=ANY_VALUE,
    temperature=ANY_VALUE,
    max_configurations=ANY_VALUE,
    enumerate=ANY_VALUE,
)
def test_auto_reinmax_options(estimator, temperature, max_configurations, enumerate):
    expected = (
        estimator in (*ESTIMATORS, "auto")
        and valid_temperature(temperature)
        and valid_count(max_configurations)
        and (enumerate is None or enumerate == "auto" or isinstance(enumerate, list))
    )
    options = {
        "estimator": estimator,
        "temperature": temperature,
        "max_configurations": max_configurations,
        "enumerate": enumerate,
    }
    results = {
        name: outcome(lambda infer=infer: infer.AutoReinMax(model, **options))
        for name, infer in BACKENDS.items()
    }
    invalid = [
        name
        for name, ok in {
            "estimator": estimator in (*ESTIMATORS, "auto"),
            "temperature": valid_temperature(temperature),
            "max_configurations": valid_count(max_configurations),
            "enumerate": enumerate is None or enumerate == "auto" or isinstance(enumerate, list),
        }.items()
        if not ok
    ]
    check(results, expected, invalid)


DEPENDENCIES = st.one_of(
    ANY_VALUE,
    st.sampled_from(["model", "Model"]),
    st.dictionaries(
        st.sampled_from(["z", "w"]), st.one_of(ANY_VALUE, st.lists(st.text(max_size=2)))
    ),
)


def valid_dependencies(value) -> bool:
    return (
        value is None
        or value == "model"
        or (
            isinstance(value, dict)
            and all(
                isinstance(parents, list) and all(isinstance(p, str) for p in parents)
                for parents in value.values()
            )
        )
    )


@settings(max_examples=80, deadline=None)
@given(dependencies=DEPENDENCIES)
def test_auto_reinmax_dependencies(dependencies):
    """``None``, ``"model"`` or a dict from site to a list of site names, in both backends."""
    results = {
        name: outcome(lambda infer=infer: infer.AutoReinMax(model, dependencies=dependencies))
        for name, infer in BACKENDS.items()
    }
    check(results, valid_dependencies(dependencies), ["dependencies"])


@settings(max_examples=80, deadline=None)
@given(num_particles=ANY_VALUE, analytic_kl=ANY_VALUE)
def test_local_elbo_options(num_particles, analytic_kl):
    expected = valid_count(num_particles) and isinstance(analytic_kl, bool)
    results = {
        name: outcome(
            lambda infer=infer: infer.TraceLocalEnum_ELBO(
                num_particles=num_particles, analytic_kl=analytic_kl
            )
        )
        for name, infer in BACKENDS.items()
    }
    invalid = [] if valid_count(num_particles) else ["num_particles"]
    check(results, expected, invalid + ([] if isinstance(analytic_kl, bool) else ["analytic_kl"]))


LOGITS = st.lists(
    st.sampled_from([0.0, -1.5, 2.0, 30.0, -math.inf, math.inf, math.nan]), min_size=6, max_size=6
)


@settings(max_examples=80, deadline=None)
@given(entries=LOGITS, temperature=ANY_VALUE)
@pytest.mark.parametrize("kind", ["ReinMaxCategorical", "ReinMaxOneHotCategorical"])
def test_guide_classes_refuse_bad_logits_and_temperatures(kind, entries, temperature):
    logits = np.array(entries, dtype=np.float32).reshape(2, 3)
    rows_ok = all(
        not np.isnan(row).any() and not np.isposinf(row).any() and np.isfinite(row).any()
        for row in logits
    )
    expected = rows_ok and valid_temperature(temperature)
    builders = {
        "pyro": lambda: getattr(pyro_reinmax, kind)(
            logits=torch.tensor(logits), temperature=temperature, validate_args=True
        ),
        "numpyro": lambda: getattr(numpyro_reinmax, kind)(
            logits=jnp.asarray(logits), temperature=temperature, validate_args=True
        ),
    }
    results = {name: outcome(build) for name, build in builders.items()}
    invalid = ([] if rows_ok else ["logits", "row"]) + (
        [] if valid_temperature(temperature) else ["temperature"]
    )
    check(results, expected, invalid)
