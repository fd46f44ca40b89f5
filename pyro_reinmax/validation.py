"""Argument checks shared by the functional estimators and the distributions.

Each check raises ``ValueError`` with a message that says what was wrong and what to do instead.
Data-dependent checks are skipped while ``torch.jit`` traces (they would be baked into the trace).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor
from torch.distributions import Distribution

from reinmax_core.messages import divergence_hint


def validation_enabled(validate_args: bool | None = None) -> bool:
    """Whether to validate: ``validate_args`` if given, else torch's global default.

    ``pyro.enable_validation(False)`` and ``Distribution.set_default_validate_args(False)`` turn the
    global default off.
    """
    if torch._C._get_tracing_state():
        return False
    return Distribution._validate_args if validate_args is None else bool(validate_args)


def check_temperature(temperature: float | Tensor) -> float:
    """Return ``temperature`` as a Python float, or raise if it is not a finite number > 0.

    The temperature is a fixed hyper-parameter: no gradient flows to it.
    """
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1:
            raise ValueError(
                f"temperature must be a single number, got a tensor of shape "
                f"{tuple(temperature.shape)}; use one distribution per temperature."
            )
        temperature = temperature.item()
    if isinstance(temperature, bool) or not isinstance(temperature, Real):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}.")
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature}. ReinMax's paper uses "
            "1.0 to 1.5; 1.0 makes ReinMax exact for quadratic objectives."
        )
    return temperature


def check_event_tensor(name: str, value: Tensor) -> None:
    """Raise unless ``value`` is a floating tensor with at least one (event) axis."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}.")
    if value.dim() < 1 or value.shape[-1] < 1:
        raise ValueError(
            f"{name} must have a last axis of categories, got shape {tuple(value.shape)}."
        )


DIVERGENCE_HINT = divergence_hint("pyro_reinmax")


def first_bad_entry(name: str, bad: Tensor, values: Tensor) -> str:
    """``"name[i, j] = v (and n more)"`` for the first entry where ``bad`` holds."""
    positions = bad.nonzero()
    index = tuple(positions[0].tolist())
    more = len(positions) - 1
    return f"{name}[{', '.join(map(str, index))}] = {values[index].item()}" + (
        f" (and {more} more)" if more else ""
    )


def check_logits(logits: Tensor) -> None:
    """Raise unless every entry is finite or ``-inf`` (a masked category) and each row has a
    finite entry. One pass: a row's maximum is NaN, +inf or -inf exactly when the row is bad."""
    check_event_tensor("logits", logits)
    if torch.isfinite(logits.amax(-1)).all():
        return
    bad = torch.isnan(logits) | torch.isposinf(logits)
    if bad.any():
        raise ValueError(
            f"logits contain NaN or +inf: {first_bad_entry('logits', bad, logits)}. Logits must "
            f"be finite, or -inf to mask a category. {DIVERGENCE_HINT}"
        )
    raise ValueError(
        "a row of logits is -inf everywhere "
        f"({first_bad_entry('row', torch.isneginf(logits).all(-1), logits.amax(-1))}): at least "
        "one category per row must stay unmasked."
    )


def check_probs(probs: Tensor) -> None:
    """Raise unless ``probs`` is finite, non-negative and sums to one along the last axis."""
    check_event_tensor("probs", probs)
    bad = ~torch.isfinite(probs) | (probs < 0)
    if bad.any():
        raise ValueError(
            f"probs must be finite and non-negative: {first_bad_entry('probs', bad, probs)}. "
            f"{DIVERGENCE_HINT}"
        )
    total = probs.sum(-1, dtype=torch.float64)
    tolerance = max(1e-6, 4 * probs.shape[-1] * torch.finfo(probs.dtype).eps)
    error = (total - 1).abs().max().item() if total.numel() else 0.0
    if error > tolerance:
        raise ValueError(
            f"probs must sum to 1 along the last axis (largest deviation {error:.3g}, tolerance "
            f"{tolerance:.1g}). Normalise them (probs / probs.sum(-1, keepdim=True)) or pass "
            "logits instead."
        )


def check_one_hot(name: str, value: Tensor) -> None:
    """Raise unless every row of ``value`` (last axis) is one-hot: entries 0 or 1, one 1."""
    if value.numel() == 0:
        return
    binary = (value == 0) | (value == 1)
    if binary.all() and (value.sum(-1) == 1).all():
        return
    bad = (~binary.all(-1) | (value.sum(-1) != 1)).nonzero()[0].tolist()
    raise ValueError(
        f"{name} must be one-hot (entries 0 or 1, exactly one 1 per row); the row at index "
        f"{tuple(bad)} is {value[tuple(bad)].tolist()}. Pass a sample of a one-hot site (a "
        "ReinMax/straight-through sample or an enumerated value), not probabilities or a "
        "relaxed (Concrete) sample."
    )


def check_row_totals(totals: Tensor) -> None:
    """Raise if a row of ``softmax(logits)`` sums to NaN: NaN or +inf logits, or a fully masked
    row."""
    if torch.isnan(totals).any():
        raise_nan_rows()


def raise_nan_rows() -> None:
    """The error for a row of ``softmax(logits)`` that sums to NaN."""
    raise ValueError(
        "softmax(logits) is NaN: the logits contain NaN or +inf, or a row is -inf everywhere. "
        "Logits must be finite, or -inf to mask a category, with one unmasked per row."
    )
