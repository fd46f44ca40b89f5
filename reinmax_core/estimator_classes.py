r"""The distribution classes of every estimator rule, derived from the rule table for a backend.

Each backend writes one base class per kind of site (one-hot, Bernoulli, integer categorical)
whose draw and backward read the class attribute ``rule_name``; :func:`estimator_classes`
derives, for every rule of :data:`~reinmax_core.rules.RULES`, the subclass of each base with the
rule's name (``RuleDoc.class_stem`` + ``OneHotCategorical``, ``Bernoulli`` or ``Categorical``)
and a docstring stating its backward. A rule added to the table therefore has its classes, its
guide sites and its API entries in both backends without further code.
"""

from __future__ import annotations

from .rules import DISTRIBUTION_KINDS, OPTION_DOCS, RULES, RuleDoc

__all__ = ["CLASS_SUFFIXES", "class_docstring", "class_name", "estimator_classes"]

CLASS_SUFFIXES = {
    "one_hot": "OneHotCategorical",
    "bernoulli": "Bernoulli",
    "categorical": "Categorical",
}
"""The class name of each kind of site, after the rule's ``class_stem``."""

_SUMMARIES = {
    "one_hot": (
        "One-hot categorical with {label} gradients ({reference}).\n\n"
        r"The draw :math:`D \sim \operatorname{{Categorical}}(\pi_0)`, "
        r":math:`\pi_0 = \operatorname{{softmax}}(\theta)`, is exact; with "
        r":math:`g = \partial L/\partial D` and "
        r":math:`J(p) = \operatorname{{diag}}(p) - p p^\top` the backward is {backward}. "
        "``log_prob``, ``entropy``, KL and ``enumerate_support`` are those of "
        ":class:`OneHotCategorical`."
    ),
    "bernoulli": (
        "Bernoulli with {label} gradients ({reference}).\n\n"
        r"The draw :math:`b` is exact; the backward is the two-category rule on the one-hot "
        r":math:`D = (1 - b, b)` with logits :math:`\theta = (0, \ell)`, :math:`\ell` the "
        r"log-odds (the gradient of :class:`{one_hot}` on that pair): {backward}."
    ),
    "categorical": (
        "Integer categorical guide site with {label} gradients ({reference}) under "
        "``TraceLocalEnum_ELBO``.\n\n"
        r"The draw :math:`D \sim \operatorname{{Categorical}}(\pi_0)`, "
        r":math:`\pi_0 = \operatorname{{softmax}}(\theta)`, is recorded as its index, and the "
        r"backward reaches :math:`\theta` through the one-hot draw "
        r"(:math:`g = \partial L/\partial D`, "
        r":math:`J(p) = \operatorname{{diag}}(p) - p p^\top`): {backward}."
    ),
}
_CATEGORIES_PARAMETERS = (
    "probs, logits: event probabilities or unnormalised log-probabilities ``(..., K)``; "
    "``-inf`` logits (zero probabilities) mask categories."
)
_PARAMETERS = {
    "one_hot": _CATEGORIES_PARAMETERS,
    "bernoulli": r"probs: probability of 1 (or ``logits``, its log-odds; :math:`\pm\infty` "
    "allowed).",
    "categorical": _CATEGORIES_PARAMETERS,
}


def class_name(rule_name: str, kind: str) -> str:
    """The class of ``kind`` (``"one_hot"``, ``"bernoulli"`` or ``"categorical"``) of a rule."""
    return _doc(rule_name).class_stem + CLASS_SUFFIXES[kind]


def _doc(rule_name: str) -> RuleDoc:
    doc = RULES[rule_name].doc
    if doc is None:
        raise ValueError(
            f"The rule {rule_name!r} has no RuleDoc: give its Rule in reinmax_core/rules.py a "
            "doc=RuleDoc(class_stem, label, reference, backward), which names its classes."
        )
    return doc


def class_docstring(rule_name: str, kind: str, framework: str) -> str:
    """The docstring of the rule's class of ``kind``: its backward, then its arguments
    (``framework``, "torch" or "NumPyro", names whose ``validate_args`` it follows)."""
    rule, doc = RULES[rule_name], _doc(rule_name)
    summary = _SUMMARIES[kind].format(
        label=doc.label,
        reference=doc.reference,
        backward=doc.backward,
        one_hot=class_name(rule_name, "one_hot"),
    )
    arguments = [
        _PARAMETERS[kind],
        r"temperature: :math:`\tau > 0`, used by the backward only (the draw does not depend "
        "on it).",
        *(f"{option}: {OPTION_DOCS[option]}" for option, _ in rule.options),
        f"validate_args: as for every {framework} distribution.",
    ]
    return summary + "\n\nArgs:\n" + "\n".join(f"    {line}" for line in arguments) + "\n"


def estimator_classes(bases: dict[str, type], module: str, framework: str) -> dict[str, tuple]:
    """For every rule, its classes in the order of ``DISTRIBUTION_KINDS``: each a subclass of
    ``bases[kind]`` with ``rule_name`` set, named by :func:`class_name`, documented by
    :func:`class_docstring` and placed in ``module`` (where the package exports it)."""
    return {
        rule_name: tuple(
            type(
                class_name(rule_name, kind),
                (bases[kind],),
                {
                    "rule_name": rule_name,
                    "__doc__": class_docstring(rule_name, kind, framework),
                    "__module__": module,
                },
            )
            for kind in DISTRIBUTION_KINDS
        )
        for rule_name in RULES
    }
