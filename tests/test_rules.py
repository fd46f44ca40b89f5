"""The rule table of ``reinmax_core.rules`` is the one both backends and the C kernels read: each
backend's families name every rule, each class runs its rule, and the kernels' encoding of an
anchor term (``kernels.h``, ``torch_estimator.cc``, ``xla_ffi.cc``) is the table's."""

import re

import pytest

import numpyro_reinmax.families
import pyro_reinmax.families
from reinmax_core import rules
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
