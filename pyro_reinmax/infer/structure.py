"""What of a model's arguments can change its structure (its sites and their dependencies)."""

from __future__ import annotations

from collections.abc import Hashable

import torch


def structure_key(args: tuple, kwargs: dict, *, floats: bool = False) -> tuple:
    """What of a model's arguments can change its set of sites: tensor shapes, container lengths
    and integer, string and boolean values (with ``floats``, Python floats too; never tensor
    values)."""

    def key(value: object) -> Hashable:
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape))
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, tuple(key(item) for item in value))
        if isinstance(value, dict):
            return ("dict", tuple((name, key(item)) for name, item in sorted(value.items())))
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if floats and isinstance(value, float):
            return value
        return type(value).__name__

    return key(args), key(kwargs)
