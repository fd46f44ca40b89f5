r"""One perturbation dimension for a whole model: which element sets which sampled variable to what.

``TraceLocalEnum_ELBO`` scores every factor :math:`\log f(z_1, \dots, z_m)` of a model by its
multilinear extension in the one-hot values of its sampled discrete parents. At a sampled one-hot
configuration :math:`D` the extension's value is :math:`\log f(D)` and its gradient in
:math:`z_i[k]` is :math:`\log f(z_i = k, z_{-i} = D_{-i})`: the factor with one parent set to
:math:`k`, the others at their draw. So every factor is evaluated at those configurations only,
all in one batch dimension shared by the whole model (the *perturbation dimension*): element
:math:`(s, k)` sets every variable of *slot* :math:`s` to category :math:`k` and leaves every
other variable at its draw. A factor's value at the sample is its element :math:`(s, d)` for the
drawn category :math:`d` of any parent in slot :math:`s`.

Variables that share a factor must lie in different slots (a factor then sees at most one set
parent per element); variables that never share a factor may share one. :func:`plan_slots`
colours the variables greedily, in the order given, so a chain of any length needs 2 slots, a
factor of ten parents 10, and every instance of a plated site shares the site's slot. The
dimension has :math:`\sum_s K_s` elements. A model whose sampled variables all share one slot
(a mixture, a topic model: one plated site) sets every instance to the same category at each
element, so the values broadcast along the plate as under enumeration.

This module is backend-neutral: it knows names and counts, not arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["AT_DRAW", "SiteVariables", "SlotPlan", "plan_slots"]

AT_DRAW = -1
"""In :meth:`SlotPlan.settings`: the variable keeps its drawn category at that element."""


@dataclass(frozen=True)
class SiteVariables:
    """A sampled site's discrete variables: ``count`` of them (the positions of its event dims
    beyond the category's; 1 for a site with none), each with ``categories`` values. The
    instances of a plate are one variable: they share the site's slots."""

    count: int
    categories: int


@dataclass(frozen=True)
class SlotPlan:
    r"""The perturbation dimension of a model.

    Attributes:
        size: the number of elements, :math:`\sum_s K_s`.
        slots: site -> the slot of each of its variables.
        elements: site -> for each of its variables, the elements that set it to category
            :math:`k = 0, \dots, K - 1` (in that order).
    """

    size: int
    slots: Mapping[str, tuple[int, ...]]
    elements: Mapping[str, tuple[tuple[int, ...], ...]]

    def settings(self, site: str) -> list[list[int]]:
        """``size x count`` categories of a site's variables: ``settings[e][m] = k`` where element
        ``e`` sets variable ``m`` to ``k``, else :data:`AT_DRAW`."""
        table = [[AT_DRAW] * len(self.elements[site]) for _ in range(self.size)]
        for m, elements in enumerate(self.elements[site]):
            for k, element in enumerate(elements):
                table[element][m] = k
        return table

    def covers(self, site: str) -> bool:
        """Whether every element sets every variable of ``site`` (one slot for the whole model,
        and the site's categories fill it): its values are then the same for every instance."""
        return all(len(elements) == self.size for elements in self.elements[site])


def plan_slots(
    sites: Mapping[str, SiteVariables], factor_parents: Iterable[Iterable[str]]
) -> SlotPlan:
    """Colour the variables of ``sites`` (in their order) so that no two variables of one factor's
    parents share a slot, and lay the slots out along the perturbation dimension.

    Args:
        sites: the sampled sites, in the model's order, with their variables.
        factor_parents: for every factor of the model, the sampled sites it depends on (sites
            not in ``sites`` are ignored). A site's own variables always conflict with each
            other. Over-approximating a factor's parents is safe: it costs elements, never
            correctness.

    A variable takes the free slot that needs the fewest new elements (a slot of at least its
    categories needs none), the first of those, or opens a new slot.
    """
    neighbours: dict[str, set[str]] = {name: set() for name in sites}
    for parents in factor_parents:
        parents = [name for name in dict.fromkeys(parents) if name in sites]
        for name in parents:
            neighbours[name].update(parents)
    slot_categories: list[int] = []
    slots: dict[str, tuple[int, ...]] = {}
    for name, variables in sites.items():
        taken = {slot for other in neighbours[name] if other in slots for slot in slots[other]}
        own: list[int] = []
        for _ in range(variables.count):
            slot = _cheapest_free_slot(slot_categories, taken, variables.categories)
            if slot == len(slot_categories):
                slot_categories.append(variables.categories)
            slot_categories[slot] = max(slot_categories[slot], variables.categories)
            taken.add(slot)
            own.append(slot)
        slots[name] = tuple(own)
    starts, size = [], 0
    for categories in slot_categories:
        starts.append(size)
        size += categories
    elements = {
        name: tuple(
            tuple(range(starts[slot], starts[slot] + sites[name].categories)) for slot in own
        )
        for name, own in slots.items()
    }
    return SlotPlan(size=size, slots=slots, elements=elements)


def _cheapest_free_slot(slot_categories: list[int], taken: set[int], categories: int) -> int:
    """The free slot needing the fewest new elements for a variable of ``categories`` values
    (the first of equals); ``len(slot_categories)`` for a new slot."""
    best, best_cost = len(slot_categories), categories
    for slot, size in enumerate(slot_categories):
        if slot in taken:
            continue
        cost = max(0, categories - size)
        if cost < best_cost:
            best, best_cost = slot, cost
            if cost == 0:
                break
    return best
