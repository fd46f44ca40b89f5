"""Checks of a guide site against the model's site of the same name, with the same messages in
both backends."""

from __future__ import annotations


def check_same_plates(
    name: str, guide_plates: dict[str, int], model_plates: dict[str, int]
) -> None:
    """A ``ValueError`` naming the site and the plate when a plate that encloses both the guide's
    and the model's site ``name`` has another size in each (``{plate name: size}``)."""
    for plate, size in guide_plates.items():
        if plate in model_plates and model_plates[plate] != size:
            raise ValueError(
                f"site {name!r}: the guide draws it in plate {plate!r} of size {size}, the model "
                f"in plate {plate!r} of size {model_plates[plate]}: sample the guide site in the "
                "model's plates (AutoReinMax does)."
            )
