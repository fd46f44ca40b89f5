"""The rule table of ``reinmax_core.rules`` is the one both backends and the C kernels read: each
backend's families name every rule, each class runs its rule, and the kernels' encoding of an
anchor term (``kernels.h``, ``torch_estimator.cc``, ``xla_ffi.cc``) is the table's."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import numpyro_reinmax.families
import pyro_reinmax
import pyro_reinmax.families
from reinmax_core import rules
from reinmax_core.estimator_classes import class_docstring, class_name, estimator_classes
from reinmax_kernels import HEADERS, TORCH_ESTIMATOR_SOURCE, XLA_HANDLERS_SOURCE

FAMILIES = {"pyro": pyro_reinmax.families, "numpyro": numpyro_reinmax.families}


def _defines(text: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"#define (REINMAX_\w+) (\d+)\b", text)}


@pytest.mark.parametrize("backend", list(FAMILIES))
def test_each_backend_has_a_class_of_each_kind_for_every_rule(backend):
    estimators = FAMILIES[backend].ESTIMATORS
    assert tuple(estimators) == rules.ESTIMATOR_NAMES
    for name, classes in estimators.items():
        assert len(classes) == len(rules.DISTRIBUTION_KINDS)
        if name in rules.RULES:
            assert {cls.rule_name for cls in classes} == {name}, classes


def test_the_kernels_read_anchor_terms_as_the_table_encodes_them():
    header = _defines(HEADERS[0].read_text())
    assert header["REINMAX_ANCHOR_WEIGHTS"] == rules.ANCHOR_WEIGHTS
    kinds = {
        None: header["REINMAX_PLAIN"],
        "probs": header["REINMAX_AT_PROBS"],
        "midpoint": header["REINMAX_AT_MIDPOINT"],
        "gap": header["REINMAX_GAPPED"],
    }
    assert kinds == rules.ANCHOR_KINDS
    operator = TORCH_ESTIMATOR_SOURCE.read_text()
    constants = dict(re.findall(r"\b(k\w+) = (\d+)", operator))
    perturbations = {
        None: 0,
        "gap": int(constants["kShiftedByGap"]),
        "gumbel": int(constants["kGumbelNoise"]),
    }
    assert perturbations == rules.PERTURBATIONS
    assert "REINMAX_ANCHOR_WEIGHTS + 1" in XLA_HANDLERS_SOURCE.read_text()  # and b


def test_rules_are_named_fields_and_check_their_options():
    reinmax = rules.RULES["reinmax"]
    assert (reinmax.tempered_weight, reinmax.sample_weight, reinmax.anchor_scale) == (0.5, 0.5, 2.0)
    assert reinmax.noise_count(()) == 0
    assert rules.RULES["gumbel_rao"].noise_count((("samples", 4),)) == 4
    assert rules.RULES["reinmax_cv"].noise_count(rules.RULES["reinmax_cv"].options) == 11
    with pytest.raises(TypeError, match="takes no option 'gap'"):
        rules.rule_options("reinmax", {"gap": 1.0}, float)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        rules.rule_options("gumbel_rao", {"samples": 0}, float)
    assert rules.rule_options("gapped_straight_through", {"gap": 2}, float) == (("gap", 2.0),)
    with pytest.raises(ValueError, match="estimator must be one of"):
        rules.check_estimator("reinmax2")
    assert rules.check_estimator("auto", allow_auto=True) == "auto"


def test_every_rule_names_its_classes_and_states_its_options():
    for name, rule in rules.RULES.items():
        assert rule.doc is not None and rule.doc.backward, name
        for kind in rules.DISTRIBUTION_KINDS:
            docstring = class_docstring(name, kind, "torch")
            assert rule.doc.label in docstring and rule.doc.reference in docstring
            for option, _ in rule.options:
                assert f"    {option}: " in docstring, (name, option)
    assert getattr(pyro_reinmax, class_name("reinmax_cv", "bernoulli")).rule_name == "reinmax_cv"


def test_a_rule_without_its_doc_is_refused_with_what_to_add(monkeypatch):
    monkeypatch.setitem(rules.RULES, "undocumented", rules.Rule(tempered_weight=1.0))
    with pytest.raises(ValueError, match="has no RuleDoc: give its Rule"):
        class_name("undocumented", "one_hot")


HALF_STRAIGHT_THROUGH = rules.Rule(
    tempered_weight=1.0,
    anchor_scale=0.5,
    inverse_temperature_power=1,
    doc=rules.RuleDoc("HalfStraightThrough", "half straight-through", "a test", "half of ST's"),
)


@pytest.fixture
def half_straight_through(monkeypatch):
    """A rule added to the table, as a contributor would add one: nothing else is edited."""
    monkeypatch.setitem(rules.RULES, "half_straight_through", HALF_STRAIGHT_THROUGH)


@pytest.mark.parametrize("backend", list(FAMILIES))
def test_a_rule_added_to_the_table_has_working_classes_in_each_backend(
    backend, half_straight_through
):
    """The classes derived for a new rule draw exactly as the others and run the new backward:
    half of straight-through's gradient, on the same draw."""
    families = FAMILIES[backend]
    bases = {
        kind: cls.__mro__[1]
        for kind, cls in zip(
            rules.DISTRIBUTION_KINDS, families.ESTIMATORS["straight_through"], strict=True
        )
    }
    derived = estimator_classes(bases, module="test", framework=backend)
    half_one_hot = derived["half_straight_through"][0]
    assert half_one_hot.__name__ == "HalfStraightThroughOneHotCategorical"
    straight_one_hot = families.ESTIMATORS["straight_through"][0]
    logits = np.array([0.3, -1.2, 0.8, 0.1])
    weights = np.array([1.0, -2.0, 0.5, 3.0])
    if backend == "pyro":
        grads = []
        for cls in (half_one_hot, straight_one_hot):
            theta = torch.tensor(logits, requires_grad=True)
            torch.manual_seed(0)
            sample = cls(logits=theta).rsample()
            (sample * torch.tensor(weights)).sum().backward()
            grads.append(theta.grad.numpy())
    else:
        grads = [
            np.asarray(
                jax.grad(
                    lambda theta, cls=cls: (
                        cls(logits=theta).sample(jax.random.PRNGKey(0)) * weights
                    ).sum()
                )(jnp.asarray(logits))
            )
            for cls in (half_one_hot, straight_one_hot)
        ]
    assert np.any(grads[1] != 0)
    np.testing.assert_allclose(grads[0], 0.5 * grads[1], rtol=1e-6)
