"""``AutoReinMax(dependencies=...)`` (Pyro): a guide whose discrete sites are drawn given the sites
they depend on in the posterior. References: exact ELBO gradients by enumerating every
configuration of tiny models, and the exact log evidence of a hidden Markov chain."""

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive
from pyro.ops.indexing import Vindex

from pyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO
from reference import assert_unbiased
from reinmax_core.dependencies import TABLE_CONFIGURATIONS
from reinmax_examples.sticky_hmm_pyro import log_evidence, sticky_data, sticky_hmm

F64 = torch.float64
LOCS = torch.tensor([-1.0, 0.0, 1.2], dtype=F64)
TRANS = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], dtype=F64)
COUPLING = torch.tensor(
    [[[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]], [[0.3, 0.4, 0.3], [0.6, 0.3, 0.1]]] + [[[0.2] * 3] * 2],
    dtype=F64,
)
COUPLING = COUPLING / COUPLING.sum(-1, keepdim=True)
DATA = torch.tensor([0.3, -0.8, 1.1], dtype=F64)


def chain(length: int):
    """A chain of ``length`` 3-state sites with a noisy observation each, in a plate of copies."""

    def model(data, copies=1):
        with pyro.plate("copies", copies):
            z = None
            for t in range(length):
                probs = torch.ones(3, dtype=F64) / 3 if z is None else TRANS[z]
                z = pyro.sample(f"z_{t}", dist.Categorical(probs))
                pyro.sample(f"x_{t}", dist.Normal(LOCS[z], 1.0), obs=data[t])

    return model


def two_parents(data, copies=1):
    """A site whose prior depends on two sites (the second binary), observed through itself."""
    with pyro.plate("copies", copies):
        a = pyro.sample("a", dist.Categorical(torch.ones(3, dtype=F64) / 3))
        pyro.sample("x_a", dist.Normal(LOCS[a], 1.0), obs=data[0])
        b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.4, dtype=F64)))
        c = pyro.sample("c", dist.Categorical(Vindex(COUPLING)[a, b.long()]))
        pyro.sample("x_c", dist.Normal(LOCS[c], 0.5), obs=data[2])


def _exact_elbo(model, parents: dict, tables: dict, kinds: dict) -> torch.Tensor:
    """Every configuration of the sampled sites scored: sum_z q(z) (log p(x, z) - log q(z))."""
    names = list(parents)
    sizes = [2 if kinds[n] == "bernoulli" else 3 for n in names]
    elbo = 0.0
    for values in itertools.product(*(range(k) for k in sizes)):
        setting = dict(zip(names, values, strict=True))
        log_q = 0.0
        for name in names:
            row = tables[name][tuple(setting[p] for p in parents[name])]
            if kinds[name] == "bernoulli":
                row = torch.stack([torch.zeros_like(row), row])
            log_q = log_q + row.log_softmax(-1)[setting[name]]
        data = {
            n: torch.tensor(float(v), dtype=F64) if kinds[n] == "bernoulli" else torch.tensor(v)
            for n, v in setting.items()
        }
        trace = pyro.poutine.trace(pyro.condition(model, data=data)).get_trace(DATA)
        elbo = elbo + log_q.exp() * (trace.log_prob_sum() - log_q)
    return elbo


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["straight_through", "reinmax"])
@pytest.mark.parametrize("case", ["chain2", "chain3", "two_parents"])
def test_every_site_gets_an_unbiased_gradient_through_its_guide_descendants(case, estimator):
    """Under TraceLocalEnum_ELBO each site's guide descendants are drawn again when it moves, so
    straight-through and ReinMax (temperature 1) are unbiased for every table, roots included.
    One draw per plate element: each copy has its own table (per-datum logits)."""
    model = two_parents if case == "two_parents" else chain(int(case[-1]))
    copies = 4000
    guide = AutoReinMax(model, dependencies="model", estimator=estimator)
    guide(DATA, copies)
    part = guide[0]
    generator = torch.Generator().manual_seed(1)
    tables, kinds = {}, {}
    for name, parents in part.parents.items():
        kinds[name] = "bernoulli" if name == "b" else "categorical"
        shape = [3 if p != "b" else 2 for p in parents] + ([] if name == "b" else [3])
        tables[name] = torch.randn(shape, generator=generator, dtype=F64)
        setattr(part.logits, name, tables[name].expand((copies, *shape)).clone())
    if case == "two_parents":
        assert part.parents == {"a": (), "b": ("a",), "c": ("a", "b")}
    else:
        assert all(part.parents[f"z_{t}"] == (f"z_{t - 1}",) for t in range(1, int(case[-1])))
    leaves = {n: t.clone().requires_grad_() for n, t in tables.items()}
    exact_elbo = _exact_elbo(model, part.parents, leaves, kinds)
    exact = torch.autograd.grad(exact_elbo, list(leaves.values()))
    loss = TraceLocalEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, DATA, copies)
    params = [getattr(part.logits, n) for n in tables]
    estimates = torch.autograd.grad(-loss, params)
    for estimate, expected in zip(estimates, exact, strict=True):
        assert_unbiased(estimate.reshape(copies, -1).numpy(), expected.reshape(-1).numpy())


@pytest.mark.slow
def test_the_structured_guide_reaches_the_log_evidence_of_a_sticky_chain():
    """30 steps: the structured guide's ELBO within 1 nat of the exact log evidence, the mean-field
    guide's not (its best is several nats below: the posterior is a chain)."""
    data = sticky_data()
    evidence = log_evidence(data)
    gaps = {}
    for dependencies in (None, "model"):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = AutoReinMax(sticky_hmm, dependencies=dependencies)
        svi = SVI(sticky_hmm, guide, pyro.optim.Adam({"lr": 0.1}), TraceLocalEnum_ELBO())
        for _ in range(250):
            svi.step(data)
        elbo = TraceLocalEnum_ELBO(num_particles=2000, vectorize_particles=True)
        gaps[dependencies] = evidence + elbo.loss(sticky_hmm, guide, data)
    assert gaps["model"] < 1.0, gaps
    assert gaps[None] > 3.0, gaps


def test_predictive_and_median_follow_the_dependencies():
    pyro.set_rng_seed(0)
    model = chain(3)
    guide = AutoReinMax(model, dependencies="model")
    guide(DATA)
    part = guide[0]
    strong = 40.0 * torch.eye(3, dtype=F64)
    part.logits.z_0 = torch.tensor([0.0, 5.0, 0.0], dtype=F64)
    part.logits.z_1 = strong.roll(1, 1)  # z_1 = z_0 + 1
    part.logits.z_2 = strong.roll(1, 1)
    assert {n: int(v) for n, v in guide.median(DATA).items()} == {"z_0": 1, "z_1": 2, "z_2": 0}
    draws = Predictive(model, guide=guide, num_samples=200)(DATA)
    z0, z1, z2 = (draws[f"z_{t}"].reshape(-1) for t in range(3))
    assert torch.equal(z1, (z0 + 1) % 3) and torch.equal(z2, (z1 + 1) % 3)


def test_a_dict_of_dependencies_overrides_the_model_and_is_checked():
    model = chain(3)
    guide = AutoReinMax(model, dependencies={"z_2": ["z_0"]})
    guide(DATA)
    assert guide[0].parents == {"z_0": (), "z_1": (), "z_2": ("z_0",)}
    with pytest.raises(ValueError, match=r"'z_1'.*not a discrete site the guide samples before"):
        AutoReinMax(model, dependencies={"z_0": ["z_1"]})(DATA)
    with pytest.raises(ValueError, match="names \\['w'\\]"):
        AutoReinMax(model, dependencies={"w": ["z_0"]})(DATA)
    with pytest.raises(TypeError, match="dependencies must be"):
        AutoReinMax(model, dependencies="posterior")


def test_a_parent_in_a_plate_its_child_is_not_in_is_refused():
    def model(data):
        with pyro.plate("n", 2):
            a = pyro.sample("a", dist.Categorical(torch.ones(3)))
        b = pyro.sample("b", dist.Categorical(torch.ones(3)))
        pyro.sample("x", dist.Normal(LOCS.float()[a].sum() + b, 1.0), obs=data)

    with pytest.raises(ValueError, match="'a', which lies in plate\\(s\\) \\['n'\\]"):
        AutoReinMax(model, dependencies={"b": ["a"]})(torch.tensor(0.0))


def test_many_parents_get_an_additive_layer():
    """Four 3-state parents (81 > TABLE_CONFIGURATIONS configurations): logits b + sum_p W_p e_p,
    one weight row per parent category, per plate element; it trains under the local ELBO."""
    assert TABLE_CONFIGURATIONS < 3**4

    def model(data, copies=1):
        with pyro.plate("copies", copies):
            parents = [
                pyro.sample(f"p_{i}", dist.Categorical(torch.ones(3, dtype=F64) / 3))
                for i in range(4)
            ]
            weight = sum(parents).to(F64)
            c = pyro.sample("c", dist.Bernoulli(logits=weight - 4.0))
            pyro.sample("x", dist.Normal(c + LOCS[parents[0]], 0.5), obs=data[0])

    guide = AutoReinMax(model, dependencies="model")
    guide(DATA, 2)
    part = guide[0]
    assert part.parents["c"] == ("p_0", "p_1", "p_2", "p_3")
    assert part.weights.c.shape == (2, 12)  # per copy, 4 x 3 one-hot inputs, a 0/1 site
    assert part.logits.c.shape == (2,)
    loss = TraceLocalEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, DATA, 2)
    weights, bias = torch.autograd.grad(loss, [part.weights.c, part.logits.c])
    assert weights.abs().sum() > 0 and bias.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="KNOWN BIAS: a sampled site that shares a factor with a summed-out site gets the "
    "linearised factors' derivative inside the sum over the summed-out site (and, under "
    "analytic_kl, its prior's expectation inside that sum), not the marginal at each of its "
    "categories. Mean field and structured guides alike; see docs/guides/local_enumeration.md",
)
@pytest.mark.parametrize("dependencies", [None, {"z_2": ["z_0"]}])
def test_sites_next_to_summed_out_sites_get_unbiased_gradients(dependencies):
    """A three-site chain with its middle site summed out by the ELBO: the gradient should be
    unbiased for the ELBO with the middle site marginalised, sum_{z0, z2} q(z0) q(z2 | z0)
    (log sum_{z1} p(x, z0, z1, z2) - log q)."""
    model = chain(3)
    copies = 4000
    guide = AutoReinMax(model, enumerate=["z_1"], dependencies=dependencies)
    guide(DATA, copies)
    part = guide[0]
    structured = dependencies is not None
    assert part.parents == {"z_0": (), "z_2": ("z_0",) if structured else ()}
    generator = torch.Generator().manual_seed(2)
    tables = {"z_0": torch.randn(3, generator=generator, dtype=F64)}
    tables["z_2"] = torch.randn((3, 3) if structured else (3,), generator=generator, dtype=F64)
    for name, table in tables.items():
        setattr(part.logits, name, table.expand((copies, *table.shape)).clone())
    leaves = {n: t.clone().requires_grad_() for n, t in tables.items()}
    exact_elbo = 0.0
    for z0, z2 in itertools.product(range(3), range(3)):
        row = leaves["z_2"][z0] if structured else leaves["z_2"]
        log_q = leaves["z_0"].log_softmax(-1)[z0] + row.log_softmax(-1)[z2]
        log_p = []
        for z1 in range(3):
            values = {"z_0": torch.tensor(z0), "z_1": torch.tensor(z1), "z_2": torch.tensor(z2)}
            trace = pyro.poutine.trace(pyro.condition(model, data=values)).get_trace(DATA)
            log_p.append(trace.log_prob_sum())
        exact_elbo = exact_elbo + log_q.exp() * (torch.stack(log_p).logsumexp(0) - log_q)
    exact = torch.autograd.grad(exact_elbo, list(leaves.values()))
    loss = TraceLocalEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, DATA, copies)
    estimates = torch.autograd.grad(-loss, [part.logits.z_0, part.logits.z_2])
    for estimate, expected in zip(estimates, exact, strict=True):
        assert_unbiased(estimate.reshape(copies, -1).numpy(), expected.reshape(-1).numpy())


def test_under_a_pathwise_elbo_the_childs_draw_reaches_its_parents_logits():
    """Under a pathwise ELBO (Trace_ELBO, TraceMeanField_ELBO) a one-hot model's structured guide
    is differentiated pathwise: the gradient of the last site's observation reaches the first
    site's logits through the second site's conditional (zero when the second ignores the
    first)."""
    import pyro_reinmax as pr

    def model(data):
        z = None
        for t in range(2):
            probs = torch.ones(3, dtype=F64) / 3 if z is None else z @ TRANS
            z = pyro.sample(f"z_{t}", pr.OneHotCategorical(probs=probs))
        pyro.sample("x", dist.Normal(z @ LOCS, 0.5), obs=data[0])

    grads = {}
    for dependencies in (None, {"z_1": ["z_0"]}):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        guide = AutoReinMax(model, estimator="reinmax", dependencies=dependencies)
        guide(DATA)
        part = guide[0]
        part.logits.z_1 = torch.randn(part.logits.z_1.shape, dtype=F64)
        # the observation and z_1's terms only: z_0's own prior and entropy left out
        pyro.set_rng_seed(1)
        trace = pyro.poutine.trace(guide).get_trace(DATA)
        replayed = pyro.poutine.trace(pyro.poutine.replay(model, trace=trace)).get_trace(DATA)
        observed = replayed.nodes["x"]["fn"].log_prob(replayed.nodes["x"]["value"])
        (grad,) = torch.autograd.grad(observed, part.logits.z_0, allow_unused=True)
        grads[dependencies is None] = torch.zeros(3) if grad is None else grad
    assert torch.all(grads[True] == 0)
    assert grads[False].abs().sum() > 0


@pytest.mark.parametrize(
    ("enumerate", "warns"), [(["z_1"], True), ([], False), (["z_0", "z_1", "z_2"], False)]
)
def test_a_factor_of_sampled_and_summed_out_sites_warns_of_the_known_bias(enumerate, warns):
    """The configuration of the xfail test above is not silent: the ELBO names the factors; a
    chain sampled throughout, or summed out throughout, does not warn."""
    import warnings

    model = chain(3)
    guide = AutoReinMax(model, enumerate=enumerate)
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        elbo.loss(model, guide, DATA, 2)
        elbo.loss(model, guide, DATA, 2)
    messages = [str(w.message) for w in caught if "summed-out sites" in str(w.message)]
    assert len(messages) == (1 if warns else 0)  # once per ELBO
    if warns:
        assert "'z_1' (sampled: z_0; summed out: z_1)" in messages[0]
        assert "'z_2' (sampled: z_2; summed out: z_1)" in messages[0]
