r"""The estimator rules both backends implement, their options, and how the C kernels encode them.

Every estimator maps logits :math:`\theta` to ``(sample, probs)``: ``probs`` :math:`\pi_0 =
\operatorname{softmax}(\theta)` over the last axis and ``sample`` :math:`D` an exact one-hot draw
from ``Categorical(probs)``. The temperature never changes the draw; the rules differ only in the
backward pass. With :math:`g = \partial L / \partial \text{sample}`, :math:`h = \partial L /
\partial \text{probs}`, :math:`J(p) = \operatorname{diag}(p) - p p^\top` (the Jacobian of softmax)
and :math:`\tau` the temperature:

* ReinMax (Liu et al., 2023), second-order accurate (Heun's method):
  :math:`\pi_1 = (\operatorname{softmax}(\theta/\tau) + D) / 2`,
  :math:`\nabla_\theta = 2 J(\pi_1) g - \tfrac12 J(\pi_0) g + J(\pi_0) h`.
* Straight-through (Bengio et al., 2013), first order:
  :math:`\nabla_\theta = J(\operatorname{softmax}(\theta/\tau))\, g / \tau + J(\pi_0) h`.
* Straight-through Gumbel-softmax (Jang et al., 2017): the sample is
  :math:`\operatorname{onehot}(\arg\max(\theta + G))` with Gumbel noise :math:`G`, and with
  :math:`y = \operatorname{softmax}((\theta + G)/\tau)`,
  :math:`\nabla_\theta = J(y)\, g / \tau + J(\pi_0) h`. The category is drawn exactly by inverse
  CDF and :math:`\theta + G` conditionally on it (each backend's
  ``sampling.perturbed_logits_given_index``): the same joint law, exact at every magnitude of the
  logits.
* Gapped straight-through, GST (Fan et al., 2022): the straight-through backward at the
  deterministically shifted logits :math:`\tilde\theta` with :math:`\tilde\theta_D = \max\theta`
  and :math:`\tilde\theta_j = \min(\theta_j, \max\theta - \kappa)` elsewhere (gap :math:`\kappa`):
  :math:`\nabla_\theta = J(\operatorname{softmax}(\tilde\theta/\tau))\, g / \tau + J(\pi_0) h`.
* Gumbel-Rao, GR-MCK (Paulus et al., 2021): the ST-Gumbel backward averaged over :math:`S` draws
  of Gumbel noise conditional on the drawn category,
  :math:`\nabla_\theta = \tfrac1S \sum_s J(y_s)\, g / \tau + J(\pi_0) h`,
  :math:`y_s = \operatorname{softmax}((\theta + G_s)/\tau)`, :math:`\arg\max(\theta + G_s) = D`.
* ReinMax-Rao (Wang and Bui, 2026): ReinMax with its first term replaced by the Gumbel-Rao
  average at the midpoint logits :math:`\theta_D = \log((\pi_0 + D)/2)`:
  :math:`\nabla_\theta = \tfrac2S \sum_s J(y_s)\, g / \tau - \tfrac12 J(\pi_0) g + J(\pi_0) h`,
  :math:`y_s = \operatorname{softmax}((\theta_D + G_s)/\tau)`, :math:`\arg\max(\theta_D + G_s) =
  D`.
* ReinMax-CV (Wang and Bui, 2026): ReinMax plus :math:`\eta` times the difference between the
  Gumbel-Rao average and a single unconditional ST-Gumbel term, both at :math:`\theta_D` and the
  temperature :math:`\tau_2`: :math:`\tfrac{\eta}{\tau_2}(\tfrac1S \sum_s J(y_s) - J(y_0))\, g`,
  :math:`y_0 = \operatorname{softmax}((\theta_D + G_0)/\tau_2)` with unconditional Gumbel
  :math:`G_0`. The two ReinMax variants follow the paper's equations 17 and 18 as public
  reimplementations transcribe them (the paper's own text was not reachable here).

The single-anchor rules share one backward, :math:`c\, J(a) g + J(\pi_0)(h + b\, g)` with anchor
:math:`a = w_y y + w_D D` and scales :math:`c = \text{anchor\_scale} / \tau^{p}`, :math:`b =
\text{probs\_scale}` (the Gumbel rules average :math:`J(a)` over their conditional draws);
ReinMax-CV adds its control variate's terms. ``-inf`` logits mask categories: they are never drawn
and receive a zero (finite) gradient. The temperature receives no gradient.

This module holds no arrays: each backend's ``estimators`` computes the anchors and the
Jacobian-vector products, and its ``native`` passes a term to the C kernels with the encoding
below (``reinmax_kernels/kernels.h`` and ``torch_estimator.cc``; a test checks they agree).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import NamedTuple

from .auto_estimator import AUTO

__all__ = [
    "ANCHOR_KINDS",
    "ANCHOR_WEIGHTS",
    "DISTRIBUTION_KINDS",
    "ESTIMATOR_NAMES",
    "OPTION_DOCS",
    "PERTURBATIONS",
    "RULES",
    "SCORE_FUNCTION",
    "Options",
    "Rule",
    "RuleDoc",
    "check_estimator",
    "rule_options",
]


Options = tuple[tuple[str, float | None], ...]
"""A rule's options with their values, in the rule's order (:func:`rule_options`)."""


class RuleDoc(NamedTuple):
    r"""How a rule is named and described: its classes are ``class_stem`` + ``OneHotCategorical``,
    ``Bernoulli`` or ``Categorical`` (``reinmax_core.estimator_classes``), their docstrings name
    ``label`` and ``reference`` and state ``backward``, the rule's gradient of the logits in terms
    of the one-hot draw :math:`D`, :math:`g = \partial L/\partial D`, :math:`\pi_0 =
    \operatorname{softmax}(\theta)` and :math:`J(p) = \operatorname{diag}(p) - p p^\top`."""

    class_stem: str
    label: str
    reference: str
    backward: str


OPTION_DOCS = {
    "gap": r"GST's gap :math:`\kappa` (default 1.0, the paper's GST-1.0).",
    "samples": "how many conditional Gumbel draws the backward averages (default 10).",
    "eta": r"the weight :math:`\eta` of the control variate (default 1.0).",
    "cv_temperature": r"the control variate's temperature :math:`\tau_2` (default: the "
    "temperature).",
}
"""What each rule option means, for the classes' docstrings."""


class Rule(NamedTuple):
    r"""An estimator's backward.

    A single-anchor rule: anchor weights :math:`(w_y, w_D)` (``tempered_weight``,
    ``sample_weight``), the scales :math:`c` = ``anchor_scale`` / :math:`\tau` **
    ``inverse_temperature_power`` and :math:`b` = ``probs_scale``, and the perturbation of the
    logits inside :math:`y` (None; ``"gap"``: GST's shift; ``"gumbel"``: Gumbel noise drawn
    conditionally on the category, at :math:`\pi_0` or, with ``gumbel_at="midpoint"``, at
    :math:`(\pi_0 + D)/2`, the anchor averaged over the rule's ``samples`` draws, one without that
    option). A rule of several terms names them in ``terms`` (each backend's
    ``MULTI_TERM_RULES[terms]`` returns its anchor terms) and draws ``noise_sets`` sets of
    exponentials beyond ``samples``. ``options``: the rule's own keyword arguments with their
    defaults; ``doc``: its names and formula for the distribution classes (:class:`RuleDoc`)."""

    tempered_weight: float = 0.0
    sample_weight: float = 0.0
    anchor_scale: float = 0.0
    inverse_temperature_power: int = 0
    probs_scale: float = 0.0
    perturbation: str | None = None
    gumbel_at: str = "probs"
    terms: str | None = None
    noise_sets: int = 0
    options: Options = ()
    doc: RuleDoc | None = None

    def noise_count(self, options: Options) -> int:
        """How many sets of exponentials the forward pass draws (0: none)."""
        if self.perturbation != "gumbel" and self.terms is None:
            return 0
        return int(dict(options).get("samples", 1)) + self.noise_sets


_STRAIGHT_THROUGH = {
    "tempered_weight": 1.0,
    "anchor_scale": 1.0,
    "inverse_temperature_power": 1,
}

RULES = {
    "reinmax": Rule(
        tempered_weight=0.5,
        sample_weight=0.5,
        anchor_scale=2.0,
        probs_scale=-0.5,
        doc=RuleDoc(
            "ReinMax",
            "ReinMax",
            "Liu et al., NeurIPS 2023",
            r":math:`\nabla_\theta = 2 J(\pi_1) g - \tfrac12 J(\pi_0) g` with "
            r":math:`\pi_1 = (\operatorname{softmax}(\theta/\tau) + D)/2` (Heun's method: at "
            r":math:`\tau = 1` the expected gradient is exact for objectives quadratic in "
            r":math:`D`)",
        ),
    ),
    "straight_through": Rule(
        **_STRAIGHT_THROUGH,
        doc=RuleDoc(
            "StraightThrough",
            "straight-through",
            "Bengio et al., 2013",
            r":math:`\nabla_\theta = J(\operatorname{softmax}(\theta/\tau))\, g / \tau`",
        ),
    ),
    "gumbel_straight_through": Rule(
        **_STRAIGHT_THROUGH,
        perturbation="gumbel",
        doc=RuleDoc(
            "GumbelStraightThrough",
            "straight-through Gumbel-softmax",
            "Jang et al., 2017",
            r":math:`\nabla_\theta = J(y)\, g / \tau`, "
            r":math:`y = \operatorname{softmax}((\theta + G)/\tau)` with Gumbel noise :math:`G` "
            r"drawn given :math:`\arg\max(\theta + G) = D`",
        ),
    ),
    "gapped_straight_through": Rule(
        **_STRAIGHT_THROUGH,
        perturbation="gap",
        options=(("gap", 1.0),),
        doc=RuleDoc(
            "GappedStraightThrough",
            "gapped straight-through (GST)",
            "Fan et al., ICML 2022",
            r":math:`\nabla_\theta = J(\operatorname{softmax}(\tilde\theta/\tau))\, g / \tau` at "
            r"the logits :math:`\tilde\theta` shifted so that the drawn category leads every "
            r"other by at least the gap :math:`\kappa`",
        ),
    ),
    "gumbel_rao": Rule(
        **_STRAIGHT_THROUGH,
        perturbation="gumbel",
        options=(("samples", 10),),
        doc=RuleDoc(
            "GumbelRao",
            "Gumbel-Rao (GR-MCK)",
            "Paulus et al., ICLR 2021",
            r"the straight-through Gumbel-softmax backward averaged over :math:`S` draws of "
            r"Gumbel noise conditional on :math:`D`, "
            r":math:`\nabla_\theta = \tfrac1S \sum_s J(y_s)\, g / \tau`",
        ),
    ),
    "reinmax_rao": Rule(
        **{**_STRAIGHT_THROUGH, "anchor_scale": 2.0},
        probs_scale=-0.5,
        perturbation="gumbel",
        gumbel_at="midpoint",
        options=(("samples", 10),),
        doc=RuleDoc(
            "ReinMaxRao",
            "ReinMax-Rao",
            "Wang and Bui, 2026",
            r"ReinMax with its first term replaced by a Gumbel-Rao average at the midpoint "
            r":math:`\theta_D = \log((\pi_0 + D)/2)`: "
            r":math:`\nabla_\theta = \tfrac2S \sum_s J(y_s)\, g / \tau - \tfrac12 J(\pi_0) g`",
        ),
    ),
    "reinmax_cv": Rule(
        probs_scale=-0.5,
        terms="reinmax_cv",
        noise_sets=1,
        options=(("samples", 10), ("eta", 1.0), ("cv_temperature", None)),
        doc=RuleDoc(
            "ReinMaxCV",
            "ReinMax-CV",
            "Wang and Bui, 2026",
            r"ReinMax plus :math:`\eta` times the difference between a Gumbel-Rao average and "
            r"one unconditional straight-through Gumbel term, both at "
            r":math:`\theta_D = \log((\pi_0 + D)/2)` and the temperature :math:`\tau_2`",
        ),
    ),
}
"""Every estimator rule by name: the functional ops, the distributions and the guides use it."""

SCORE_FUNCTION = "score_function"
"""The plain, non-reparameterized distributions (REINFORCE with ``TraceGraph_ELBO``)."""
ESTIMATOR_NAMES = (*RULES, SCORE_FUNCTION)
"""The names each backend's ``families.ESTIMATORS`` maps to its classes."""
DISTRIBUTION_KINDS = ("one_hot", "bernoulli", "categorical")
"""The order of each ``families.ESTIMATORS`` entry's classes."""


def check_estimator(
    estimator: str, *, reparameterized_only: bool = False, allow_auto: bool = False
) -> str:
    """``estimator`` if it names a rule (or ``"score_function"`` unless
    ``reparameterized_only``, ``"auto"`` where ``allow_auto``), else a ``ValueError`` listing
    those that do."""
    allowed = tuple(RULES) if reparameterized_only else ESTIMATOR_NAMES
    allowed += (AUTO,) if allow_auto else ()
    if estimator not in allowed:
        raise ValueError(f"estimator must be one of {sorted(allowed)}, got {estimator!r}.")
    return estimator


def rule_options(
    rule_name: str, options: dict | None, check_temperature: Callable[[float], float]
) -> Options:
    """The rule's options with defaults filled in, checked, as a hashable tuple: ``samples`` an
    integer >= 1, ``gap`` a finite number >= 0, ``eta`` a finite number, ``cv_temperature`` None
    (the temperature) or a valid temperature (``check_temperature``, the backend's). Raises on an
    option the rule does not take."""
    if not options:  # the defaults, valid as they stand
        return RULES[rule_name].options
    defaults = dict(RULES[rule_name].options)
    options = dict(options)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise TypeError(f"{rule_name} takes no option {unknown[0]!r} (its options: {allowed}).")
    merged = {**defaults, **options}
    for name, value in merged.items():
        if name == "samples":
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"samples must be an integer >= 1, got {value!r}.")
            merged[name] = int(value)
        elif name == "cv_temperature":
            merged[name] = None if value is None else check_temperature(value)
        else:
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}.")
            if name == "gap" and value < 0:
                raise ValueError(f"gap must be >= 0, got {value!r}.")
            merged[name] = float(value)
    return tuple(merged.items())


ANCHOR_WEIGHTS = 6
"""``REINMAX_ANCHOR_WEIGHTS``: the kernels' numbers per anchor term, :math:`(w_y, w_D, c,
1/\\tau` or -1, kind, gap)."""
ANCHOR_KINDS = {None: 0, "probs": 1, "midpoint": 2, "gap": 3}
"""An anchor term's kind as the kernels read it: the values are the anchor or logits to temper
(0), exponentials of conditional Gumbel noise at :math:`\\pi_0` (1) or at the midpoint (2), or
logits shifted by GST's gap (3, ``REINMAX_GAPPED``)."""
PERTURBATIONS = {None: 0, "gap": 1, "gumbel": 2}
"""``Rule.perturbation`` as the estimator operator (``torch_estimator.cc``) reads it."""
