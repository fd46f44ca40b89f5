"""enum_onehot: TraceEnum_ELBO sums one-hot sites out exactly as it sums out Categorical sites, and
NUTS marginalises them (the posterior against an exact grid computation)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.stats
from numpyro.contrib.funsor import config_enumerate
from numpyro.infer import MCMC, NUTS, Predictive, TraceEnum_ELBO

import numpyro_reinmax as nr
import numpyro_reinmax.infer
from reference import chain_posterior

X = jnp.array([-1.0, 0.5, 2.0, 3.5])
LOCS = jnp.array([-1.0, 1.5, 3.0])
PRIOR = jnp.array([0.2, -0.1, 0.4])


def categorical_model():
    with numpyro.plate("data", 4):
        z = numpyro.sample("z", dist.Categorical(logits=PRIOR))
        numpyro.sample("x", dist.Normal(LOCS[z], 1.0), obs=X)


def one_hot_model(cls=nr.OneHotCategorical):
    with numpyro.plate("data", 4):
        z = numpyro.sample("z", cls(logits=PRIOR))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(LOCS, 1.0)), obs=X)


def exact_loss() -> float:
    joint = jax.nn.log_softmax(PRIOR) + dist.Normal(LOCS, 1.0).log_prob(X[:, None])
    return float(-jax.scipy.special.logsumexp(joint, -1).sum())


@pytest.mark.parametrize(
    "cls", [nr.OneHotCategorical, nr.ReinMaxOneHotCategorical, nr.StraightThroughOneHotCategorical]
)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_enum_onehot_gives_the_categorical_loss(cls, jit, key):
    def loss(key):
        return TraceEnum_ELBO().loss(key, {}, nr.enum_onehot(one_hot_model), lambda *_: None, cls)

    categorical = TraceEnum_ELBO().loss(key, {}, config_enumerate(categorical_model), lambda: None)
    ours = jax.jit(loss)(key) if jit else loss(key)
    np.testing.assert_allclose(ours, categorical, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours, exact_loss(), rtol=1e-12)


def test_enum_onehot_gradients_match_the_categorical_model(key):
    def loss(locs, one_hot):
        def categorical():
            with numpyro.plate("data", 4):
                z = numpyro.sample("z", dist.Categorical(logits=PRIOR))
                numpyro.sample("x", dist.Normal(locs[z], 1.0), obs=X)

        def onehot():
            with numpyro.plate("data", 4):
                z = numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=PRIOR))
                numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=X)

        model = nr.enum_onehot(onehot) if one_hot else config_enumerate(categorical)
        return TraceEnum_ELBO().loss(key, {}, model, lambda: None)

    np.testing.assert_allclose(jax.grad(loss)(LOCS, True), jax.grad(loss)(LOCS, False), rtol=1e-10)


def test_site_configuration_is_respected(key):
    """A site marked for sequential enumeration (or not at all) is left to NumPyro."""

    def model():
        numpyro.sample("z", nr.OneHotCategorical(logits=PRIOR), infer={"enumerate": "sequential"})

    trace = numpyro.handlers.trace(numpyro.handlers.seed(nr.enum_onehot(model), 0)).get_trace()
    assert trace["z"]["infer"]["enumerate"] == "sequential"
    assert trace["z"]["value"].shape == (3,)


def test_outside_enumeration_values_stay_one_hot(key):
    samples = Predictive(nr.enum_onehot(one_hot_model), num_samples=6)(key)
    assert samples["z"].shape == (6, 4, 3)
    np.testing.assert_array_equal(samples["z"].sum(-1), 1)


SHIFT_DATA = jnp.array([-3.1, -2.4, -1.2, -0.8, 1.1, 1.6, 2.2, 2.9, 3.3, -2.0])


def shift_model(one_hot: bool):
    """Two unit-variance components at mu - 2 and mu + 2 with equal weights; mu ~ N(0, 3)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 3.0))
    locs = jnp.stack([mu - 2.0, mu + 2.0])
    with numpyro.plate("data", len(SHIFT_DATA)):
        if one_hot:
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(2)))
            numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=SHIFT_DATA)
        else:
            z = numpyro.sample(
                "z", dist.Categorical(logits=jnp.zeros(2)), infer={"enumerate": "parallel"}
            )
            numpyro.sample("x", dist.Normal(locs[z], 1.0), obs=SHIFT_DATA)


def grid_posterior_moments():
    """The exact posterior of mu by quadrature on a fine grid, assignments summed out."""
    grid = jnp.linspace(-6, 6, 24001)
    locs = jnp.stack([grid - 2, grid + 2], -1)[:, None, :]
    mixture = jax.scipy.special.logsumexp(
        dist.Normal(locs, 1.0).log_prob(SHIFT_DATA[:, None]), -1
    ) - jnp.log(2)
    log_post = dist.Normal(0.0, 3.0).log_prob(grid) + mixture.sum(-1)
    weights = jnp.exp(log_post - log_post.max())
    weights = weights / weights.sum()
    mean = (weights * grid).sum()
    return float(mean), float(jnp.sqrt((weights * (grid - mean) ** 2).sum()))


@pytest.mark.slow
def test_nuts_with_enum_onehot_samples_the_exact_posterior(key):
    exact_mean, exact_sd = grid_posterior_moments()
    mcmc = MCMC(
        NUTS(nr.enum_onehot(shift_model)), num_warmup=500, num_samples=2000, progress_bar=False
    )
    mcmc.run(key, one_hot=True)
    mu = np.asarray(mcmc.get_samples()["mu"])
    standard_error = exact_sd / np.sqrt(numpyro.diagnostics.effective_sample_size(mu[None]))
    assert abs(mu.mean() - exact_mean) < 4 * standard_error
    assert mu.std() == pytest.approx(exact_sd, rel=0.1)
    # the Categorical formulation of the same model, enumerated by NumPyro itself, agrees
    reference = MCMC(NUTS(shift_model), num_warmup=500, num_samples=2000, progress_bar=False)
    reference.run(key, one_hot=False)
    np.testing.assert_allclose(
        reference.get_samples()["mu"].mean(), mu.mean(), atol=6 * standard_error
    )


def _guide_enumerated_mixture():
    x = jnp.array([-1.0, 0.5, 2.0])
    locs = jnp.array([-1.0, 1.0])

    def model():
        with numpyro.plate("n", 3):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.array([0.2, -0.1])))
            numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x)

    def guide():
        q = numpyro.param("q", jnp.array([[0.5, -0.5], [0.0, 0.3], [-1.0, 1.0]]))
        with numpyro.plate("n", 3):
            numpyro.sample(
                "z", nr.ReinMaxOneHotCategorical(logits=q), infer={"enumerate": "parallel"}
            )

    return model, guide, x, locs


def test_guide_side_enumeration_needs_enum_onehot_on_the_guide_and_says_so(key):
    model, guide, x, locs = _guide_enumerated_mixture()
    with pytest.raises(ValueError, match="and the guide too for a site enumerated in the guide"):
        TraceEnum_ELBO().loss(key, {}, nr.enum_onehot(model), guide)
    loss = TraceEnum_ELBO().loss(key, {}, nr.enum_onehot(model), nr.enum_onehot(guide))
    # exact: sum_n sum_k q_nk (log p(z=k) + log N(x_n | loc_k, 1) - log q_nk)
    q = jax.nn.log_softmax(jnp.array([[0.5, -0.5], [0.0, 0.3], [-1.0, 1.0]]), -1)
    prior = jax.nn.log_softmax(jnp.array([0.2, -0.1]))
    likelihood = dist.Normal(locs, 1.0).log_prob(x[:, None])
    expected = -(jnp.exp(q) * (prior + likelihood - q)).sum()
    np.testing.assert_allclose(loss, expected, rtol=1e-10)


@pytest.mark.parametrize("wrap", [False, True], ids=["model", "enum_onehot(model)"])
def test_continuous_autoguides_say_what_works_for_one_hot_sites(wrap, key):
    from numpyro.infer.autoguide import AutoNormal

    model, _, _, _ = _guide_enumerated_mixture()
    model = nr.enum_onehot(model) if wrap else model
    with pytest.raises((ValueError, NotImplementedError), match=r"infer\.AutoReinMax"):
        numpyro.infer.Trace_ELBO().loss(key, {}, model, AutoNormal(model))


# --------------------------------------------------------------- infer_discrete with one-hot sites

CHAIN_INITIAL = np.array([0.5, 0.3, 0.2])
CHAIN_TRANSITION = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
CHAIN_LOCS = np.array([-1.0, 0.5, 2.0])
CHAIN_X = np.array([0.2, 1.1])
COPIES = 3000


def chain_model(cls, copies=COPIES):
    """Two steps of a chain, written select-then-score with one-hot states, in a plate of
    independent copies of the same observations."""
    transition, locs = jnp.asarray(CHAIN_TRANSITION), jnp.asarray(CHAIN_LOCS)
    with numpyro.plate("copies", copies):
        z = numpyro.sample("z_0", cls(probs=jnp.asarray(CHAIN_INITIAL)))
        numpyro.sample("x_0", dist.Normal(z @ locs, 1.0), obs=CHAIN_X[0])
        z = numpyro.sample("z_1", cls(probs=z @ transition))
        numpyro.sample("x_1", dist.Normal(z @ locs, 1.0), obs=CHAIN_X[1])
    return z


@pytest.mark.parametrize("cls", [nr.OneHotCategorical, nr.ReinMaxOneHotCategorical])
def test_infer_discrete_draws_the_exact_posterior_of_one_hot_sites(cls, key):
    posterior = chain_posterior(CHAIN_INITIAL, CHAIN_TRANSITION, CHAIN_LOCS, CHAIN_X)
    sampler = nr.infer.infer_discrete(chain_model, first_available_dim=-2, rng_key=key)
    trace = numpyro.handlers.trace(sampler).get_trace(cls)
    states = [np.asarray(trace[f"z_{t}"]["value"]) for t in range(2)]
    assert all(set(s.sum(-1).tolist()) == {1.0} for s in states)  # one-hot values
    joint = states[0].argmax(-1) * 3 + states[1].argmax(-1)
    counts = np.bincount(joint, minlength=9)
    assert scipy.stats.chisquare(counts, posterior.ravel() * COPIES).pvalue > 1e-4
    # temperature 0: the maximum a posteriori configuration
    map_sampler = nr.infer.infer_discrete(
        chain_model, first_available_dim=-2, temperature=0, rng_key=key
    )
    map_trace = numpyro.handlers.trace(map_sampler).get_trace(cls, copies=1)
    best = np.unravel_index(posterior.argmax(), posterior.shape)
    map_states = [map_trace[f"z_{t}"]["value"].reshape(-1, 3)[0] for t in range(2)]
    assert [int(state.argmax()) for state in map_states] == list(best)


def test_infer_discrete_says_what_its_options_need(key):
    """NumPyro's own asserts bare (``AssertionError``) on a missing key."""
    for options, message in [
        ({"first_available_dim": -2}, "needs rng_key"),
        ({"temperature": 0}, "needs rng_key .* to guess first_available_dim"),
        ({"first_available_dim": 1, "rng_key": key}, "negative int"),
        ({"first_available_dim": -2, "temperature": 2, "rng_key": key}, "1 .posterior draws. or 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            nr.infer.infer_discrete(chain_model, **options)


def test_numpyros_infer_discrete_on_enum_onehot_hands_the_model_one_hot_values(key):
    from numpyro.contrib.funsor import infer_discrete as numpyro_infer_discrete

    sampler = numpyro_infer_discrete(
        nr.enum_onehot(chain_model), first_available_dim=-2, rng_key=key
    )
    returned = sampler(nr.OneHotCategorical, copies=5)
    np.testing.assert_array_equal(returned.sum(-1), 1.0)
