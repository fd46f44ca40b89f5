"""Which discrete sites exact enumeration can sum out within a budget (NumPyro): the choice
behind ``AutoReinMax(model, enumerate="auto")``, and the handler that shows one-hot sites to
NumPyro's enumeration as their index.

Sites are admitted in trace order while no factor's enumerated parents exceed
``max_configurations`` joint configurations per plate element; a factor over the budget takes
its last enumerated parent out, and the model is traced again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import jax.numpy as jnp
from numpyro.distributions import Distribution
from numpyro.handlers import block

from ..enumeration import _is_one_hot, restore_one_hot, show_as_index
from ..families import categories as discrete_categories
from ..scan_body import ScanAwareMessenger, base_name, steps_back

MAX_ENUMERATION_DIMS = 24
"""At most this many enumeration dims at once (and no more than NumPyro's funsor dim stack
holds): without ``markov`` every enumerated site keeps a dim of its own, so a long chain in a
plain loop has its first sites summed out and the rest sampled."""


def _enumerable(fn: Distribution, kind: str) -> bool:
    """Whether NumPyro can enumerate ``fn`` site-wise (no extra event dims over the base)."""
    return fn.event_dim == (1 if kind == "one_hot" else 0) and (
        kind == "one_hot" or fn.has_enumerate_support
    )


def factor_parents(site: dict, names: Iterable[str]) -> dict:
    """The enumerated sites among ``names`` (guide site names) that a site's factor depends on:
    dim -> name of the dim (inside ``scan``, ``_PREV_`` names are the same site's earlier steps)."""
    return {
        dim: name
        for dim, name in site["infer"].get("dim_to_name", {}).items()
        if base_name(name) in names
    }


def _factor_shape(site: dict) -> tuple:
    """The batch shape of a site's log-density (its distribution's and value's, broadcast)."""
    value_shape = jnp.shape(site["value"])
    return jnp.broadcast_shapes(
        site["fn"].batch_shape, value_shape[: len(value_shape) - site["fn"].event_dim]
    )


def over_budget(model_trace: dict, names: list[str], max_configurations: int) -> set:
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
    def _enumerate(msg: dict) -> None:
        msg["infer"]["enumerate"] = "parallel"
        if _is_one_hot(msg["fn"]):
            show_as_index(msg)

    def postprocess_sample(self, msg: dict) -> None:
        restore_one_hot(msg)


class _AdmitForEnumeration(OneHotEnumeration):
    """Mark candidate sites for parallel enumeration, in trace order, while the configurations
    visible at each (its enumerated parents' times its own categories) fit the budget, and while
    the enumeration dims in use stay within :data:`MAX_ENUMERATION_DIMS` (the first site past
    them, and every later one, is refused)."""

    def __init__(
        self, fn: Callable, candidates: dict, refused: set, budget: int, nesting: int
    ) -> None:
        super().__init__(fn)
        self.candidates, self.refused, self.budget, self.nesting = (
            candidates,
            refused,
            budget,
            nesting,
        )
        self.full = False
        self.last_admitted: str | None = None

    def process_sample(self, msg: dict) -> None:
        if msg["is_observed"]:
            return
        name, fn = msg["name"], msg["fn"]
        kind = self.candidates.get(name)
        if kind is None or name in self.refused:
            return
        if self.full:
            self.refused.add(name)
            return
        shape = fn.batch_shape
        visible = math.prod(shape[: max(0, len(shape) - self.nesting)])
        categories = discrete_categories(fn, kind)
        if not _enumerable(fn, kind) or visible * categories > self.budget:
            self.refused.add(name)
            return
        self._enumerate(msg)
        self.last_admitted = name

    def postprocess_sample(self, msg: dict) -> None:
        super().postprocess_sample(msg)
        name = msg["name"]
        if name in self.candidates and msg["infer"].get("enumerate") == "parallel":
            value = msg["value"]
            batch_dims = jnp.ndim(value) - (msg["fn"].event_dim if jnp.ndim(value) else 0)
            if batch_dims - 2 - self.nesting > MAX_ENUMERATION_DIMS:
                self.refused.add(name)
                self.full = True


def choose_enumerated(
    model: Callable,
    args: tuple,
    kwargs: dict,
    candidates: dict,
    max_configurations: int,
    max_plate_nesting: int,
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
        enumerated_model = enum(admit, first_available_dim=-2 - max_plate_nesting)
        try:
            with block(), plate_to_enum_plate():
                model_trace = packed_trace(enumerated_model).get_trace(*args, **kwargs)
        except ValueError as error:  # funsor's dim stack is full: no more sites from this one
            if "Ran out of free dims" not in str(error) or admit.last_admitted is None:
                raise
            order = list(candidates)  # the model's order
            refused |= set(order[order.index(admit.last_admitted) :])
            continue
        enumerated = _in_trace_order(
            name
            for name, site in model_trace.items()
            if base_name(name) in candidates
            and base_name(name) not in refused
            and site["infer"].get("enumerate") == "parallel"
        )
        enumerated = [name for name in enumerated if name not in refused]
        demote = over_budget(model_trace, enumerated, max_configurations)
        if not demote and not admit.full:
            return enumerated
        refused |= demote


def _in_trace_order(names: Iterable[str]) -> list[str]:
    """Distinct site names without their ``_PREV_`` prefixes, in order of first appearance."""
    return list(dict.fromkeys(base_name(name) for name in names))
