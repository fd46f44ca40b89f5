"""Argument checks shared by the functional estimators and the distributions.

Each check raises ``ValueError`` with a message that says what was wrong and what to do instead.
Checks on values run only on concrete arrays: under ``jit``/``vmap`` they are skipped, as
NumPyro's own validation is.
"""

from __future__ import annotations

import math
from numbers import Real

import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution
from numpyro.util import not_jax_tracer

from reinmax_core.messages import divergence_hint


def validation_enabled(validate_args: bool | None = None) -> bool:
    """Whether to validate: ``validate_args`` if given, else NumPyro's global default
    (``numpyro.enable_validation``)."""
    return Distribution._validate_args if validate_args is None else bool(validate_args)


def concrete(value) -> bool:
    """Whether ``value`` holds concrete numbers (not a tracer under jit, vmap or grad)."""
    return not_jax_tracer(value)


def check_temperature(temperature):
    """Return ``temperature`` (a float, or an array under tracing), raising if a concrete value is
    not a single finite number > 0. The temperature is a fixed hyper-parameter: no gradient flows
    to it."""
    if isinstance(temperature, bool) or not (
        isinstance(temperature, Real) or hasattr(temperature, "shape")
    ):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}.")
    if hasattr(temperature, "shape"):
        if np.size(temperature) != 1:
            raise ValueError(
                f"temperature must be a single number, got an array of shape "
                f"{tuple(np.shape(temperature))}; use one distribution per temperature."
            )
        if not concrete(temperature):
            return temperature
        temperature = float(np.asarray(temperature).reshape(()))
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature}. ReinMax's paper uses "
            "1.0 to 1.5; 1.0 makes ReinMax exact for quadratic objectives."
        )
    return temperature


def check_event_array(name: str, value) -> None:
    """Raise unless ``value`` is a floating array with at least one (event) axis."""
    if not jnp.issubdtype(jnp.result_type(value), jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point array, got dtype {jnp.result_type(value)}."
        )
    shape = jnp.shape(value)
    if len(shape) < 1 or shape[-1] < 1:
        raise ValueError(f"{name} must have a last axis of categories, got shape {tuple(shape)}.")


DIVERGENCE_HINT = divergence_hint("numpyro_reinmax")


def first_bad_entry(name: str, bad, values) -> str:
    """``"name[i, j] = v (and n more)"`` for the first entry where ``bad`` holds (NumPy)."""
    positions = np.argwhere(bad)
    index = tuple(int(i) for i in positions[0])
    more = len(positions) - 1
    return f"{name}[{', '.join(map(str, index))}] = {values[index]}" + (
        f" (and {more} more)" if more else ""
    )


def check_logits(logits) -> None:
    """Raise unless every entry is finite or ``-inf`` (a masked category) and each row has a
    finite entry. One pass: a row's maximum is NaN, +inf or -inf exactly when the row is bad."""
    check_event_array("logits", logits)
    if not concrete(logits):
        return
    logits = np.asarray(logits)
    if np.isfinite(logits.max(-1)).all():
        return
    bad = np.isnan(logits) | np.isposinf(logits)
    if bad.any():
        raise ValueError(
            f"logits contain NaN or +inf: {first_bad_entry('logits', bad, logits)}. Logits must "
            f"be finite, or -inf to mask a category. {DIVERGENCE_HINT}"
        )
    raise ValueError(
        "a row of logits is -inf everywhere "
        f"({first_bad_entry('row', np.isneginf(logits).all(-1), logits.max(-1))}): at least "
        "one category per row must stay unmasked."
    )


def check_probs(probs) -> None:
    """Raise unless ``probs`` is finite, non-negative and sums to one along the last axis."""
    check_event_array("probs", probs)
    if not concrete(probs):
        return
    probs = np.asarray(probs)
    bad = ~np.isfinite(probs) | (probs < 0)
    if bad.any():
        raise ValueError(
            f"probs must be finite and non-negative: {first_bad_entry('probs', bad, probs)}. "
            f"{DIVERGENCE_HINT}"
        )
    tolerance = max(1e-6, 4 * probs.shape[-1] * float(np.finfo(probs.dtype).eps))
    error = float(np.abs(probs.sum(-1, dtype=np.float64) - 1).max()) if probs.size else 0.0
    if error > tolerance:
        raise ValueError(
            f"probs must sum to 1 along the last axis (largest deviation {error:.3g}, tolerance "
            f"{tolerance:.1g}). Normalise them (probs / probs.sum(-1, keepdims=True)) or pass "
            "logits instead."
        )


def check_one_hot(name: str, value) -> None:
    """Raise unless every row of ``value`` (last axis) is one-hot: entries 0 or 1, one 1.
    Concrete values only (skipped under jit and vmap)."""
    if not concrete(value) or np.size(value) == 0:
        return
    value = np.asarray(value)
    bad_rows = ~((value == 0) | (value == 1)).all(-1) | (value.sum(-1) != 1)
    if not bad_rows.any():
        return
    bad = tuple(int(i) for i in np.argwhere(bad_rows)[0])
    raise ValueError(
        f"{name} must be one-hot (entries 0 or 1, exactly one 1 per row); the row at index "
        f"{bad} is {value[bad].tolist()}. Pass a sample of a one-hot site (a "
        "ReinMax/straight-through sample or an enumerated value), not probabilities or a "
        "relaxed (Concrete) sample."
    )


INTEGER_ENUMERATION_ADVICE = (
    "NumPyro is enumerating a one-hot site with integer indices, which a one-hot site cannot "
    "take. Under TraceEnum_ELBO or NUTS: wrap the model with numpyro_reinmax.enum_onehot "
    "(enum_onehot(model)), and the guide too for a site enumerated in the guide. Under a "
    "continuous autoguide (AutoNormal, AutoDelta, ...), which cannot cover a discrete site: use "
    "numpyro_reinmax.infer.AutoReinMax (it covers discrete and continuous sites), or hide the "
    "site from the autoguide with numpyro.handlers.block and give it a "
    "numpyro_reinmax.ReinMaxOneHotCategorical guide site."
)


def check_one_hot_value(value, num_categories: int) -> None:
    """Raise if ``value`` holds integer indices instead of one-hot vectors: what NumPyro's own
    enumeration (``TraceEnum_ELBO``, NUTS, autoguide initialisation) substitutes at a discrete site
    it was not told is one-hot. A shape check, so it also runs under jit."""
    shape = jnp.shape(value)
    integer = jnp.issubdtype(jnp.result_type(value), jnp.integer)
    if integer and (len(shape) == 0 or shape[-1] != num_categories):
        raise ValueError(
            f"a one-hot site received integer values of shape {tuple(shape)} instead of one-hot "
            f"vectors of length {num_categories}. " + INTEGER_ENUMERATION_ADVICE
        )
