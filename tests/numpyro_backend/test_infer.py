"""numpyro_reinmax.infer: the ReinMax reparameterizer and the AutoReinMax autoguide."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive, TraceEnum_ELBO
from numpyro.infer.autoguide import AutoDelta
from numpyro.optim import optax_to_numpyro

import numpyro_reinmax as nr
from numpyro_reinmax.infer import (
    AutoReinMax,
    ReinMaxReparam,
    ReinMaxStrategy,
    Trace_ELBO,
    TraceMeanField_ELBO,
)
from reinmax_core.rules import RULES

K, N = 3, 60
X = jnp.concatenate(
    [
        jax.random.normal(jax.random.PRNGKey(i), (20,)) + shift
        for i, shift in enumerate([-4.0, 0.0, 5.0])
    ]
)


def mixture(x, subsample_size=None):
    weights = numpyro.param("weights", jnp.zeros(K))
    locs = numpyro.param("locs", jnp.array([-3.0, 0.0, 3.0]))
    with numpyro.plate("data", len(x), subsample_size=subsample_size) as index:
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x[index])


def hand_written_guide(x, subsample_size=None):
    with numpyro.plate("data", len(x), subsample_size=subsample_size):
        logits = numpyro.param("auto_z_logits", jnp.zeros((len(x), K)), event_dim=1)
        numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=logits))


def optimizer():
    def labels(params):
        return {name: "local" if name.endswith("logits") else "global" for name in params}

    return optax_to_numpyro(
        optax.multi_transform({"local": optax.adam(0.2), "global": optax.adam(0.05)}, labels)
    )


def train(model, guide, loss, steps, *args):
    svi = SVI(model, guide, optimizer(), loss)
    return svi.run(jax.random.PRNGKey(1), steps, *args, progress_bar=False)


def exact_log_likelihood(params) -> float:
    joint = jax.nn.log_softmax(params["weights"]) + dist.Normal(params["locs"], 1.0).log_prob(
        X[:, None]
    )
    return float(jax.scipy.special.logsumexp(joint, -1).sum())


# ------------------------------------------------------------------------------------ reparam


def test_reparam_gives_the_reinmax_class_its_gradient(key):
    weights = jnp.array([1.0, -2.0, 0.5])

    def value(logits, reparam: bool):
        def model():
            with numpyro.plate("rows", 2):
                cls = nr.OneHotCategorical if reparam else nr.ReinMaxOneHotCategorical
                kwargs = {} if reparam else {"temperature": 1.3}
                return numpyro.sample("z", cls(logits=logits, **kwargs))

        if reparam:
            model = handlers.reparam(model, config={"z": ReinMaxReparam(1.3)})
        return handlers.seed(model, key)()

    logits = jnp.array([[0.3, -1.0, 0.5], [1.2, 0.0, -0.4]])
    np.testing.assert_array_equal(value(logits, True), value(logits, False))
    grads = [jax.grad(lambda x, r=r: (value(x, r) * weights).sum())(logits) for r in (True, False)]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


@pytest.mark.parametrize("estimator", list(RULES))
def test_strategy_reparameterizes_every_discrete_latent_site_and_nothing_else(estimator, key):
    def model():
        loc = numpyro.sample("loc", dist.Normal(0.0, 1.0))
        with numpyro.plate("rows", 4):
            z = numpyro.sample("z", nr.OneHotCategorical(probs=jnp.array([0.5, 0.0, 0.5])))
            b = numpyro.sample(
                "b", dist.Bernoulli(logits=jnp.zeros(4)).mask(jnp.array([True, False, True, True]))
            )
            numpyro.sample(
                "y",
                nr.OneHotCategorical(logits=jnp.zeros(3)),
                obs=jnp.eye(3)[jnp.array([0, 1, 2, 0])],
            )
            numpyro.sample("x", dist.Normal(loc + z[:, 0] + b, 1.0), obs=jnp.zeros(4))

    reparameterized = handlers.reparam(model, config=ReinMaxStrategy(estimator=estimator))
    trace = handlers.trace(handlers.seed(reparameterized, key)).get_trace()
    one_hot_class, bernoulli_class, _ = nr.families.ESTIMATORS[estimator]
    assert isinstance(trace["z"]["fn"], one_hot_class)
    assert isinstance(trace["b"]["fn"].base_dist, bernoulli_class)
    assert type(trace["loc"]["fn"]) is dist.Normal
    assert type(trace["y"]["fn"]) is nr.OneHotCategorical  # observed: untouched
    assert (trace["z"]["value"][:, 1] == 0).all()  # the zero probability stays masked


def test_model_side_enumeration_still_works_after_the_reparam(key):
    def model():
        with numpyro.plate("data", len(X)):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.array([0.2, -0.1, 0.4])))
            numpyro.sample(
                "x", nr.OneHotMixture(z, dist.Normal(jnp.array([-4.0, 0.0, 5.0]), 1.0)), obs=X
            )

    reparameterized = handlers.reparam(model, config=ReinMaxStrategy())
    loss = TraceEnum_ELBO().loss(key, {}, nr.enum_onehot(reparameterized), lambda: None)
    expected = TraceEnum_ELBO().loss(key, {}, nr.enum_onehot(model), lambda: None)
    np.testing.assert_allclose(loss, expected, rtol=1e-10)


def test_reparam_refuses_sites_without_a_counterpart(key):
    def model():
        numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)))

    with pytest.raises(ValueError, match="OneHotCategorical"):
        handlers.seed(handlers.reparam(model, config={"z": ReinMaxReparam()}), key)()


# ------------------------------------------------------------------------------------ autoguide


@pytest.mark.slow
def test_autoguide_reproduces_the_hand_written_guide_on_the_mixture():
    hand = train(mixture, hand_written_guide, TraceMeanField_ELBO(), 600, X)
    auto = train(mixture, AutoReinMax(mixture), TraceMeanField_ELBO(), 600, X)
    # the same parameter names, initial values and draws: the same run, to rounding
    np.testing.assert_allclose(auto.losses, hand.losses, rtol=1e-6)
    np.testing.assert_allclose(
        exact_log_likelihood(auto.params), exact_log_likelihood(hand.params), atol=1e-3
    )


@pytest.mark.slow
def test_autoguide_with_subsampling_matches_the_hand_written_subsampled_guide():
    hand = train(mixture, hand_written_guide, Trace_ELBO(), 300, X, 20)
    auto = train(mixture, AutoReinMax(mixture), Trace_ELBO(), 300, X, 20)
    np.testing.assert_allclose(auto.losses, hand.losses, rtol=1e-6)
    assert auto.params["auto_z_logits"].shape == (N, K)  # one row per data point


def test_subsampling_updates_only_the_rows_in_the_minibatch(key):
    guide = AutoReinMax(mixture)
    svi = SVI(mixture, guide, optimizer(), Trace_ELBO())
    state = svi.init(key, X, 10)
    params = svi.get_params(state)
    grads = jax.grad(lambda p: Trace_ELBO().loss(jax.random.PRNGKey(5), p, mixture, guide, X, 10))(
        params
    )
    assert (jnp.abs(grads["auto_z_logits"]).sum(-1) > 0).sum() == 10


def encoder(x, subsample_size=None):
    weight = numpyro.param("encoder_weight", jnp.array([[-1.0, 0.0, 1.0]]))
    bias = numpyro.param("encoder_bias", jnp.zeros(K))
    return x[:, None] @ weight + bias


def amortised_guide(x, subsample_size=None):
    with numpyro.plate("data", len(x)):
        numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=encoder(x)))


@pytest.mark.slow
def test_amortised_autoguide_reproduces_the_hand_written_amortised_guide():
    hand = train(mixture, amortised_guide, TraceMeanField_ELBO(), 300, X)
    auto = train(
        mixture, AutoReinMax(mixture, encoders={"z": encoder}), TraceMeanField_ELBO(), 300, X
    )
    np.testing.assert_allclose(auto.losses, hand.losses, rtol=1e-6)
    assert "encoder_weight" in auto.params


def test_continuous_sites_go_to_the_companion_and_median_quantiles_predictive_work(key):
    def model(x):
        spread = numpyro.sample("spread", dist.LogNormal(0.0, 1.0))
        with numpyro.plate("data", len(x)):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(2)))
            b = numpyro.sample("b", dist.Bernoulli(0.5))
            locs = jnp.array([-1.0, 1.0]) * spread + b[..., None]
            numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x)

    guide = AutoReinMax(model, estimator="straight_through", temperature=1.4)
    params = train(model, guide, Trace_ELBO(), 50, X).params
    trace = handlers.trace(handlers.substitute(handlers.seed(guide, key), params)).get_trace(X)
    assert isinstance(trace["z"]["fn"], nr.StraightThroughOneHotCategorical)
    assert trace["z"]["fn"].temperature == 1.4
    assert isinstance(trace["b"]["fn"], nr.StraightThroughBernoulli)
    median = guide.median(params)
    assert set(median) == {"spread", "z", "b"}
    np.testing.assert_array_equal(median["z"].sum(-1), 1)
    assert set(guide.quantiles(params, [0.5])) == {"spread"}  # discrete sites have none
    samples = guide.sample_posterior(key, params, X, sample_shape=(4,))
    assert samples["z"].shape == (4, N, 2) and samples["spread"].shape == (4,)
    predictive = Predictive(
        model, guide=guide, params=params, num_samples=3, return_sites=["z", "x"]
    )
    assert predictive(key, X)["x"].shape == (3, N)
    map_guide = AutoReinMax(model, continuous_guide=AutoDelta)
    assert set(map_guide.median(train(model, map_guide, Trace_ELBO(), 5, X).params)) == {
        "spread",
        "z",
        "b",
    }


def test_integer_sites_get_integer_guide_sites_and_others_a_clear_error(key):
    def model():
        numpyro.sample("z", dist.Categorical(logits=jnp.zeros(3)))
        numpyro.sample("n", dist.Binomial(4, 0.3))

    guide = AutoReinMax(model)
    trace = handlers.trace(handlers.seed(guide, key)).get_trace()
    assert type(trace["z"]["fn"]).__name__ == "ReinMaxCategorical"
    assert jnp.issubdtype(trace["z"]["value"].dtype, jnp.integer)
    params = {n: s["value"] for n, s in trace.items() if s["type"] == "param"}
    assert jnp.issubdtype(guide.median(params)["n"].dtype, jnp.integer)

    def counts():
        numpyro.sample("k", dist.Poisson(3.0))

    with pytest.raises(ValueError, match=r"finite support"):
        handlers.seed(AutoReinMax(counts), key)()


def test_bad_arguments():
    with pytest.raises(ValueError, match="estimator"):
        AutoReinMax(mixture, estimator="rein")
    with pytest.raises(ValueError, match="temperature"):
        AutoReinMax(mixture, temperature=0.0)


def test_score_function_family_gives_a_reinforce_guide(key):
    from numpyro.infer import TraceGraph_ELBO

    guide = AutoReinMax(mixture, estimator="score_function")
    result = train(mixture, guide, TraceGraph_ELBO(), 20, X)
    trace = handlers.trace(handlers.substitute(handlers.seed(guide, key), result.params)).get_trace(
        X
    )
    assert type(trace["z"]["fn"]) is nr.OneHotCategorical and not trace["z"]["fn"].has_rsample
    assert jnp.isfinite(result.losses).all()
    with pytest.raises(ValueError, match="zero gradient"):
        Trace_ELBO().loss(key, result.params, mixture, guide, X)
    with pytest.raises(ValueError, match="estimator"):
        ReinMaxReparam(estimator="score_function")


def topic_model(words, documents):
    """A small LDA: 3 topics over 6 words, 4 documents; a discrete topic per token."""
    with numpyro.plate("topics", 3):
        topic_words = numpyro.sample("topic_words", dist.Dirichlet(jnp.full(6, 0.5)))
    with numpyro.plate("documents", 4):
        doc_topics = numpyro.sample("doc_topics", dist.Dirichlet(jnp.ones(3)))
    with numpyro.plate("tokens", len(words)):
        z = numpyro.sample("z", nr.OneHotCategorical(probs=doc_topics[documents]))
        numpyro.sample("w", nr.OneHotMixture(z, dist.Categorical(topic_words)), obs=words)


@pytest.mark.slow
def test_autoguide_reproduces_a_hand_composed_guide_on_a_topic_model():
    """Continuous globals (AutoNormal) and local discrete topics: AutoReinMax against the same
    guide composed by hand; the same draws, the same run."""
    from functools import partial

    from numpyro.infer.autoguide import AutoNormal
    from numpyro.infer.initialization import init_to_feasible

    words = jax.random.randint(jax.random.PRNGKey(0), (40,), 0, 6)
    documents = jnp.arange(40) % 4
    plates = {}
    continuous = AutoNormal(
        handlers.block(topic_model, hide=["z"]),
        init_loc_fn=init_to_feasible,  # deterministic, as below: the starts are the same
        create_plates=lambda *_: list(plates.values()),
    )

    def hand(words, documents):
        # plates made once, in the order autoguides make them (each consumes a key), and shared
        for name, size in [("documents", 4), ("tokens", len(words)), ("topics", 3)]:
            plates[name] = numpyro.plate(name, size)
        result = continuous(words, documents)
        with plates["tokens"]:
            logits = numpyro.param("auto_z_logits", jnp.zeros((len(words), 3)), event_dim=1)
            result["z"] = numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=logits))
        return result

    losses_hand = train(topic_model, hand, TraceMeanField_ELBO(), 100, words, documents).losses
    auto = AutoReinMax(
        topic_model, continuous_guide=partial(AutoNormal, init_loc_fn=init_to_feasible)
    )
    losses_auto = train(topic_model, auto, TraceMeanField_ELBO(), 100, words, documents).losses
    np.testing.assert_allclose(losses_auto, losses_hand, rtol=1e-6)


def test_sites_that_depend_on_the_data_are_refused_with_what_to_do(key):
    def model(sequence):
        for t in range(len(sequence)):
            z = numpyro.sample(f"z_{t}", nr.OneHotCategorical(logits=jnp.zeros(2)))
            numpyro.sample(
                f"x_{t}", nr.OneHotMixture(z, dist.Normal(jnp.array([-1.0, 1.0]), 1.0)), obs=0.3
            )

    guide = AutoReinMax(model)
    svi = SVI(model, guide, numpyro.optim.Adam(0.1), TraceMeanField_ELBO())
    state = svi.init(key, jnp.zeros(3))
    state, loss = svi.update(state, jnp.ones(3))  # the same structure: fine
    assert np.isfinite(loss)
    with pytest.raises(ValueError, match=r"new: \['z_3', 'z_4'\].*pad the data to a common shape"):
        svi.update(state, jnp.ones(5))
