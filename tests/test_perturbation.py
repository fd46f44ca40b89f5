"""reinmax_core.perturbation: the slot plan behind TraceLocalEnum_ELBO's perturbation dimension.
Properties over random factor graphs (hypothesis), and the counts the docs state."""

from hypothesis import given, settings
from hypothesis import strategies as st

from reinmax_core.perturbation import AT_DRAW, SiteVariables, plan_slots


@st.composite
def factor_graphs(draw):
    """Sites with 1-3 variables of 2-5 categories, and factors over random subsets of them."""
    count = draw(st.integers(1, 8))
    sites = {
        f"s{i}": SiteVariables(draw(st.integers(1, 3)), draw(st.integers(2, 5)))
        for i in range(count)
    }
    names = list(sites)
    factors = draw(st.lists(st.lists(st.sampled_from(names), max_size=4), max_size=10))
    return sites, factors


@settings(max_examples=200, deadline=None)
@given(factor_graphs())
def test_no_factor_sees_two_of_its_variables_in_one_slot(graph):
    sites, factors = graph
    plan = plan_slots(sites, factors)
    for parents in [*factors, *([name] for name in sites)]:
        slots = [slot for name in dict.fromkeys(parents) for slot in plan.slots[name]]
        assert len(slots) == len(set(slots)), (parents, plan.slots)


@settings(max_examples=200, deadline=None)
@given(factor_graphs())
def test_elements_and_settings_agree(graph):
    """Each variable's elements set it to 0..K-1 in turn; every element sets at most one variable
    per factor; the dimension has the sum of the slots' sizes."""
    sites, factors = graph
    plan = plan_slots(sites, factors)
    slot_sizes = {}
    for name, variables in sites.items():
        table = plan.settings(name)
        assert len(table) == plan.size
        for m, elements in enumerate(plan.elements[name]):
            assert len(elements) == variables.categories
            assert [table[e][m] for e in elements] == list(range(variables.categories))
            others = set(range(plan.size)) - set(elements)
            assert all(table[e][m] == AT_DRAW for e in others)
            slot = plan.slots[name][m]
            slot_sizes[slot] = max(slot_sizes.get(slot, 0), variables.categories)
    assert plan.size == sum(slot_sizes.values())


def test_a_chain_of_any_length_takes_two_slots():
    for length in (2, 10, 500):
        sites = {f"z{t}": SiteVariables(1, 3) for t in range(length)}
        factors = [[f"z{t - 1}", f"z{t}"] for t in range(1, length)]
        plan = plan_slots(sites, factors)
        assert plan.size == 6
        assert {plan.slots[f"z{t}"] for t in range(length)} == {(0,), (1,)}


def test_a_factor_of_ten_parents_takes_ten_slots_and_a_plated_site_one():
    sites = {f"z{i}": SiteVariables(1, 4) for i in range(10)}
    assert plan_slots(sites, [list(sites)]).size == 40
    plan = plan_slots({"z": SiteVariables(1, 8)}, [["z"]])
    assert plan.size == 8 and plan.covers("z")


def test_sites_of_fewer_categories_share_a_larger_slot_at_no_cost():
    sites = {"a": SiteVariables(1, 4), "b": SiteVariables(1, 2)}
    plan = plan_slots(sites, [["a"], ["b"]])
    assert plan.size == 4 and plan.slots["a"] == plan.slots["b"]
    assert not plan.covers("b")  # its two settings leave two elements at the draw
