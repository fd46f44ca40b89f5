"""Which discrete sites exact enumeration can sum out within a budget (Pyro): the choice behind
``AutoReinMax(model, enumerate="auto")``.

Sites are admitted in trace order while no factor's enumerated parents exceed
``max_configurations`` joint configurations per plate element; a factor over the budget takes
its last enumerated parent out, and the model is traced again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pyro import poutine
from pyro.distributions.util import broadcast_shape
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import Distribution

from ..families import categories as discrete_categories

MAX_ENUMERATION_DIMS = 24
"""At most this many enumeration dims at once: without ``pyro.markov`` every enumerated site
keeps a dim of its own (torch allows 64 in all), so a long chain in a plain loop has its first
sites summed out and the rest sampled."""


def _enumerable(fn: Distribution, kind: str) -> bool:
    """Whether Pyro can enumerate ``fn`` site-wise (no extra event dims over the base)."""
    return fn.has_enumerate_support and fn.event_dim == (1 if kind == "one_hot" else 0)


def enumeration_ids(model_trace: Trace, names: list[str]) -> dict:
    """Enumeration id of each named, enumerated site of ``model_trace`` -> its name."""
    ids = {}
    for name in names:
        infer = model_trace.nodes[name]["infer"]
        ids[infer["_dim_to_id"][infer["_enumerate_dim"]]] = name
    return ids


def factor_parents(site: dict, ids: dict) -> dict:
    """The enumerated sites (of ``ids``) that a site's factor depends on: dim -> name."""
    value, fn = site["value"], site["fn"]
    shape = broadcast_shape(fn.batch_shape, value.shape[: value.dim() - fn.event_dim])
    return {
        dim: ids[id_]
        for dim, id_ in site["infer"].get("_dim_to_id", {}).items()
        if id_ in ids and len(shape) >= -dim and shape[dim] > 1
    }


def over_budget(model_trace: Trace, names: list[str], max_configurations: int) -> set:
    """The named enumerated sites to take out of enumeration so that no factor's enumerated
    parents (among ``names``, in trace order) exceed ``max_configurations`` joint configurations:
    for each factor over the budget, its parents from the last one backwards."""
    ids = enumeration_ids(model_trace, names)
    demote = set()
    for site in model_trace.nodes.values():
        if site["type"] != "sample":
            continue
        parents = factor_parents(site, ids)
        sizes = {name: model_trace.nodes[name]["value"].shape[0] for name in parents.values()}
        order = sorted(sizes, key=names.index)
        while math.prod(sizes[n] for n in order) > max_configurations:
            demote.add(order.pop())
    return demote


class _AdmitForEnumeration(Messenger):
    """Mark candidate sites for parallel enumeration, in trace order, while the configurations
    visible at each (its enumerated parents' times its own categories) fit the budget, and while
    the enumeration dims in use stay within :data:`MAX_ENUMERATION_DIMS` (the first site past
    them, and every later one, is refused)."""

    def __init__(self, candidates: dict, refused: set, budget: int, max_plate_nesting: int) -> None:
        super().__init__()
        self.candidates, self.refused = candidates, refused
        self.budget, self.max_plate_nesting = budget, max_plate_nesting
        self.full = False

    def _pyro_sample(self, msg: dict) -> None:
        name, fn = msg["name"], msg["fn"]
        kind = self.candidates.get(name)
        if msg["is_observed"] or kind is None or name in self.refused:
            return
        if self.full:
            self.refused.add(name)
            return
        shape = fn.batch_shape
        visible = math.prod(shape[: max(0, len(shape) - self.max_plate_nesting)])
        categories = discrete_categories(fn, kind)
        if not _enumerable(fn, kind) or visible * categories > self.budget:
            self.refused.add(name)
            return
        msg["infer"]["enumerate"] = "parallel"

    def _pyro_post_sample(self, msg: dict) -> None:
        dim = msg["infer"].get("_enumerate_dim")
        if dim is not None and -dim - 2 - self.max_plate_nesting > MAX_ENUMERATION_DIMS:
            self.refused.add(msg["name"])
            self.full = True


def choose_enumerated(
    model: Callable,
    args: tuple,
    kwargs: dict,
    candidates: dict,
    max_configurations: int,
    max_plate_nesting: int,
) -> list[str]:
    """The candidate sites (name -> kind, :func:`~pyro_reinmax.families.support_kind`) that
    exact enumeration can sum out with no factor over ``max_configurations`` joint
    configurations of enumerated parents: admitted greedily in trace order by tracing the model
    once (more if a factor downstream goes over the budget, which takes its last enumerated
    parent out)."""
    refused: set = set()
    while True:
        admit = _AdmitForEnumeration(candidates, refused, max_configurations, max_plate_nesting)
        enumerate_ = EnumMessenger(first_available_dim=-2 - max_plate_nesting)
        with poutine.block():
            trace = poutine.trace(enumerate_(admit(model))).get_trace(*args, **kwargs)
        trace = prune_subsample_sites(trace)
        enumerated = [
            name
            for name, site in trace.nodes.items()
            if name in candidates and site["infer"].get("_enumerate_dim") is not None
        ]
        enumerated = [name for name in enumerated if name not in refused]
        demote = over_budget(trace, enumerated, max_configurations)
        if not demote and not admit.full:
            return enumerated
        refused |= demote
