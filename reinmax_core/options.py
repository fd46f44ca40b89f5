"""Checks of the options both backends take, with the same messages."""

from __future__ import annotations

import numbers

DEFAULT_MAX_CONFIGURATIONS = 4096
"""``AutoReinMax(enumerate="auto")``'s default budget: joint configurations of a factor's
enumerated parents per plate element."""


def check_max_configurations(value) -> int:
    """``max_configurations`` as an int >= 1, or a ``TypeError`` / ``ValueError`` that says what it
    takes (a float or a bool is refused rather than rounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"max_configurations must be an int (joint configurations of a factor's enumerated "
            f"parents), got {value!r}"
        )
    if value < 1:
        raise ValueError(
            f"max_configurations must be at least 1, got {value}; to enumerate nothing, leave "
            "enumerate=None"
        )
    return int(value)


def check_count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (``num_particles``, ``num_pairs``, ...), or a
    ``TypeError`` / ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_infer_discrete(first_available_dim, temperature, *, dim_may_be_guessed: bool) -> None:
    """``infer_discrete``'s options: ``temperature`` 1 (posterior draws) or 0 (MAP), and
    ``first_available_dim`` a negative int (``-1 - max_plate_nesting``), or None where the
    backend guesses it (NumPyro)."""
    if isinstance(temperature, bool) or temperature not in (0, 1):
        raise ValueError(
            f"temperature must be 1 (posterior draws) or 0 (the MAP), got {temperature!r}."
        )
    if first_available_dim is None and dim_may_be_guessed:
        return
    if (
        isinstance(first_available_dim, bool)
        or not isinstance(first_available_dim, numbers.Integral)
        or first_available_dim >= 0
    ):
        raise ValueError(
            f"first_available_dim must be a negative int (-1 - max_plate_nesting), got "
            f"{first_available_dim!r}."
        )
