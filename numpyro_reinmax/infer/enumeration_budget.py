"""Which discrete sites exact enumeration can sum out within a budget (NumPyro): the choice
behind ``AutoReinMax(model, enumerate="auto")``, and the handler that shows one-hot sites to
NumPyro's enumeration as their index.

Sites are admitted in trace order while no factor's enumerated parents exceed
``max_configurations`` joint configurations per plate element; a factor over the budget takes
its last enumerated parent out, and the model is traced again.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from numpyro.handlers import block

from ..enumeration import _is_one_hot, restore_one_hot, show_as_index
from ..families import categories as discrete_categories
from ..scan_body import ScanAwareMessenger, base_name, steps_back

DEFAULT_MAX_CONFIGURATIONS = 4096


def _enumerable(fn, kind: str) -> bool:
    """Whether NumPyro can enumerate ``fn`` site-wise (no extra event dims over the base)."""
    return fn.event_dim == (1 if kind == "one_hot" else 0) and (
        kind == "one_hot" or fn.has_enumerate_support
    )


def factor_parents(site, names) -> dict:
    """The enumerated sites among ``names`` (guide site names) that a site's factor depends on:
    dim -> name of the dim (inside ``scan``, ``_PREV_`` names are the same site's earlier steps)."""
    return {
        dim: name
        for dim, name in site["infer"].get("dim_to_name", {}).items()
        if base_name(name) in names
    }


def _factor_shape(site) -> tuple:
    """The batch shape of a site's log-density (its distribution's and value's, broadcast)."""
    value_shape = jnp.shape(site["value"])
    return jnp.broadcast_shapes(
        site["fn"].batch_shape, value_shape[: len(value_shape) - site["fn"].event_dim]
    )


def over_budget(model_trace, names: list[str], max_configurations: int) -> set:
    """The sites among ``names`` (enumerated, in trace order) to take out of enumeration so that
    no factor's enumerated parents exceed ``max_configurations`` joint configurations: for each
    factor over the budget, its parents from the last one backwards."""
    demote = set()
    for site in model_trace.values():
        if site["type"] != "sample":
            continue
        shape = _factor_shape(site)
        sizes = {
            dim_name: shape[dim] if -dim <= len(shape) else 1
            for dim, dim_name in factor_parents(site, names).items()
        }
        order = sorted(sizes, key=lambda n: (names.index(base_name(n)), -steps_back(n)))
        while math.prod(sizes[n] for n in order) > max_configurations:
            demote.add(base_name(order.pop()))
    return demote


class OneHotEnumeration(ScanAwareMessenger):
    """Marks sites for parallel enumeration (inside ``scan`` too); one-hot sites are shown to the
    enumeration handler as their index, and the model's code receives one-hot values."""

    @staticmethod
    def _enumerate(msg) -> None:
        msg["infer"]["enumerate"] = "parallel"
        if _is_one_hot(msg["fn"]):
            show_as_index(msg)

    def postprocess_sample(self, msg) -> None:
        restore_one_hot(msg)


class _AdmitForEnumeration(OneHotEnumeration):
    """Mark candidate sites for parallel enumeration, in trace order, while the configurations
    visible at each (its enumerated parents' times its own categories) fit the budget."""

    def __init__(self, fn, candidates: dict, refused: set, budget: int, nesting: int) -> None:
        super().__init__(fn)
        self.candidates, self.refused, self.budget, self.nesting = (
            candidates,
            refused,
            budget,
            nesting,
        )

    def process_sample(self, msg) -> None:
        if msg["is_observed"]:
            return
        name, fn = msg["name"], msg["fn"]
        kind = self.candidates.get(name)
        if kind is None or name in self.refused:
            return
        shape = fn.batch_shape
        visible = math.prod(shape[: max(0, len(shape) - self.nesting)])
        categories = discrete_categories(fn, kind)
        if not _enumerable(fn, kind) or visible * categories > self.budget:
            self.refused.add(name)
            return
        self._enumerate(msg)


def choose_enumerated(
    model, args, kwargs, candidates: dict, max_configurations: int, max_plate_nesting: int
) -> list[str]:
    """The candidate sites (name -> kind, :func:`~numpyro_reinmax.families.support_kind`) that
    exact enumeration can sum out with no factor over ``max_configurations`` joint
    configurations of enumerated parents: admitted greedily in trace order by tracing the
    (seeded) model once (more if a factor downstream goes over the budget, which takes its last
    enumerated parent out)."""
    from numpyro.contrib.funsor import enum, plate_to_enum_plate
    from numpyro.contrib.funsor import trace as packed_trace

    refused: set = set()
    while True:
        admit = _AdmitForEnumeration(
            model, candidates, refused, max_configurations, max_plate_nesting
        )
        enumerated_model = enum(admit, first_available_dim=-1 - max_plate_nesting)
        with block(), plate_to_enum_plate():
            model_trace = packed_trace(enumerated_model).get_trace(*args, **kwargs)
        enumerated = _in_trace_order(
            name
            for name, site in model_trace.items()
            if base_name(name) in candidates
            and base_name(name) not in refused
            and site["infer"].get("enumerate") == "parallel"
        )
        demote = over_budget(model_trace, enumerated, max_configurations)
        if not demote:
            return enumerated
        refused |= demote


def _in_trace_order(names) -> list[str]:
    """Distinct site names without their ``_PREV_`` prefixes, in order of first appearance."""
    return list(dict.fromkeys(base_name(name) for name in names))
