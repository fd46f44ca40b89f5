"""Messages both backends give in the same words."""

from __future__ import annotations

import math


def divergence_hint(package: str) -> str:
    """What an invalid parameter met during training usually means, and what to do (``package``:
    ``"pyro_reinmax"`` or ``"numpyro_reinmax"``)."""
    return (
        "If this appeared during training, the parameters that compute it have diverged: lower "
        "the learning rate or clip gradients, and keep weights and scales away from 0 (start "
        "them inside their support, or give them a prior). Under TraceMeanField_ELBO, a factor "
        "that selects parameters with a one-hot value gets straight-through's gradient of an "
        f"arbitrary extension of the model: {package}.infer.TraceLocalEnum_ELBO (or "
        "OneHotMixture) gives it the exact one."
    )


NO_MAX_CONFIGURATIONS = (
    "TraceLocalEnum_ELBO takes no max_configurations: it scores every factor one sampled site at "
    "a time, with no cap on a factor's parents. To choose which sites to sum out exactly, use "
    'AutoReinMax(model, enumerate="auto", max_configurations=...).'
)
"""Both backends' ``TypeError`` for ``TraceLocalEnum_ELBO(max_configurations=...)``."""


def unguided_event_dims(name: str, event_shape: tuple, package: str) -> str:
    """Both backends' ``ValueError`` for a discrete model site with event dims beyond its
    categories that the guide leaves to enumeration."""
    return (
        f"model site {name!r} is discrete with event shape {tuple(event_shape)} beyond its "
        "categories (to_event), the guide does not sample it, and enumeration sums out one "
        f"variable per site: sample it in the guide (e.g. with {package}.infer.AutoReinMax, "
        "which linearises it one variable at a time), or put its batch dims in a plate instead "
        "of to_event."
    )


def structured_event_dims(which: str, name: str, parents) -> str:
    """Both backends' ``ValueError`` for a structured guide site (or a parent of one) with event
    dims beyond its categories."""
    return (
        f"site {which!r} has event dims beyond its categories (to_event): a structured guide "
        f"conditions one variable on another, so {name!r} cannot depend on {list(parents)} "
        "here. Put the batch dims in a plate, or leave the site out of dependencies."
    )


def not_reparameterized(name: str, kind: str, package: str) -> str:
    """Both backends' ``ValueError`` for a discrete guide site that ``TraceLocalEnum_ELBO`` cannot
    linearise (a plain, non-reparameterized distribution)."""
    return (
        f"guide site {name!r} is discrete and not reparameterized ({kind}): TraceLocalEnum_ELBO "
        f"would give it zero gradient. Use one of this package's estimator classes ({package}."
        "ReinMaxCategorical, ReinMaxOneHotCategorical, ReinMaxBernoulli, ...), or leave the site "
        "out of the guide to sum it out. (To estimate the ELBO of such a guide, use Trace_ELBO.)"
    )


IMPOSSIBLE = (
    "the model gives this value probability 0, and a guide that can draw it has an ELBO of "
    "-inf (under TraceLocalEnum_ELBO, also a value of a sampled discrete parent that a factor "
    "rules out): sum the parents out exactly (AutoReinMax(model, enumerate='auto'), or leave "
    "them out of the guide), or keep the probabilities off 0 (mix in a small floor)"
)
"""Why a site's log-density is ``-inf``, in ``run_checked``'s error."""

UNBOUNDED = (
    "the density is unbounded at this value, as a Dirichlet, Beta or Gamma with a concentration "
    "below 1 is at the edge of its support; a point estimate (AutoDelta) runs there and never "
    "stops: use a guide with spread (AutoNormal) or concentrations of at least 1"
)
"""Why a site's log-density is ``+inf``, in ``run_checked``'s error."""


def non_finite_step(
    step: int,
    loss: float,
    gradients: list[str] | None,
    sites: list[str] | None,
    failure: str | None,
    package: str,
) -> str:
    """``run_checked``'s error, both backends: the step, its loss, the parameters whose gradient
    is non-finite and the sites whose value or log-density is (None where recomputing the step
    raised ``failure``), then :func:`divergence_hint`."""
    lines = [
        f"SVI step {step}: the loss is {loss}"
        + (" and the updated parameters are not all finite." if math.isfinite(loss) else ".")
    ]
    if failure is not None:
        lines.append(f"Recomputing the step raised {failure}")
    else:
        lines.append(
            "Non-finite gradient in: "
            + (", ".join(gradients) if gradients else "no parameter")
            + " (recomputed from the parameters before this step)."
        )
        lines.append(
            "Sites with a non-finite value or log-density at those parameters: "
            + (", ".join(sites) if sites else "none found in a fresh draw")
            + "."
        )
    if not sites or not all("log-density -inf" in site for site in sites):
        lines.append(divergence_hint(package))
    return "\n".join(lines)


def non_finite_site(
    program: str, name: str, value_finite: bool, log_density_max: float, log_density_nan: bool
) -> str:
    """How ``run_checked`` names a site whose value or log-density is not finite
    (``log_density_max``: the largest entry of its log-density, +inf where unbounded;
    ``log_density_nan``: whether an entry is NaN)."""
    if not value_finite:
        return f"{program} site {name!r} (value)"
    if log_density_max == math.inf:
        return f"{program} site {name!r} (log-density +inf: {UNBOUNDED})"
    if not log_density_nan:
        return f"{program} site {name!r} (log-density -inf: {IMPOSSIBLE})"
    return f"{program} site {name!r} (log-density NaN)"


def infinite_loss(package: str) -> str:
    """Both backends' warning when ``TraceLocalEnum_ELBO``'s loss is ``+inf`` (an ELBO of
    ``-inf``), which SVI would otherwise train on without a word."""
    return (
        "TraceLocalEnum_ELBO: the loss is +inf (the ELBO is -inf): a model site gives probability "
        "0 to a value the guide can draw, or that a sampled discrete parent of one of its factors "
        "can take, and no step can move away from it. Sum those discrete sites out exactly "
        "(AutoReinMax(model, enumerate='auto'), or leave them out of the guide), or keep the "
        f"site's probabilities off 0 (mix in a small floor). {package}.infer.run_checked names "
        "the site."
    )


def unplaced_plate(plate: str, raised: str) -> str:
    """NumPyro's enumeration could not give ``plate`` a dimension (its ``KeyError``, ``raised``,
    which names the site it came after): a site before the plate has a batch dimension that no
    plate declares, which enumeration cannot place (Pyro refuses such a site itself)."""
    where = raised.split("\n", 1)[1].strip() if "\n" in raised else ""
    return (
        f"plate {plate!r} could not be given its dimension {where}: a site before it has a batch "
        "dimension that no plate declares (an observed value or a distribution with more batch "
        "dimensions than its plates, outside them). Sample that site inside a plate of that size, "
        "make the dimension part of its event (`.to_event(1)`, after `.expand(...)` if the "
        "dimension comes from the value), or move the site after the plates."
    )


def sampled_next_to_summed_out(factors: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> str:
    """Both backends' warning when a model factor depends on sampled sites and on sites the ELBO
    sums out (``factors``: factor name -> (its sampled parents, its summed-out sites)): the
    local ELBO's known bias there (``docs/guides/local_enumeration.md``)."""
    listed = "; ".join(
        f"{name!r} (sampled: {', '.join(sampled)}; summed out: {', '.join(summed)})"
        for name, (sampled, summed) in sorted(factors.items())
    )
    return (
        "TraceLocalEnum_ELBO: these factors depend on sampled sites and on summed-out sites: "
        f"{listed}. The gradient of those sampled sites is biased there (a known limitation: "
        "each factor is linearised inside the sum over the summed-out sites, not after it). For "
        "unbiased gradients sum those sampled sites out too (AutoReinMax(enumerate=[...]) or a "
        "larger max_configurations), or sample the summed-out ones."
    )
