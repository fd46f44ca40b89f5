"""SVI with ReinMax guides (NumPyro) reaches what exact enumeration reaches."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Predictive, TraceEnum_ELBO
from numpyro.optim import optax_to_numpyro

import numpyro_reinmax as nr
from numpyro_reinmax.infer import Trace_ELBO, TraceMeanField_ELBO

K, N, STEPS = 3, 60, 1000


def _data():
    rng = np.random.default_rng(0)
    components = rng.integers(0, K, N)
    return jnp.asarray(np.array([-4.0, 0.0, 5.0])[components] + 0.8 * rng.normal(size=N))


X = _data()


def model(x):
    weights = numpyro.param("weights", jnp.zeros(K))
    locs = numpyro.param("locs", jnp.array([-3.0, 0.0, 3.0]))
    scales = numpyro.param("scales", jnp.ones(K), constraint=dist.constraints.positive)
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=weights))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, scales)), obs=x)


def make_guide(cls=nr.ReinMaxOneHotCategorical):
    def guide(x):
        logits = numpyro.param("assignment_logits", jnp.zeros((x.shape[0], K)))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", cls(logits=logits))

    return guide


def optimizer():
    """Adam with lr 0.2 on the local assignment logits and 0.05 on the globals, decayed 10x."""

    def adam(rate):
        return optax.adam(optax.exponential_decay(rate, STEPS, 0.1))

    def labels(params):
        return {name: "local" if name == "assignment_logits" else "global" for name in params}

    transform = optax.multi_transform({"local": adam(0.2), "global": adam(0.05)}, labels)
    return optax_to_numpyro(optax.chain(optax.clip_by_global_norm(10.0), transform))


def exact_log_likelihood(params) -> float:
    joint = jax.nn.log_softmax(params["weights"]) + dist.Normal(
        params["locs"], params["scales"]
    ).log_prob(X[:, None])
    return float(jax.scipy.special.logsumexp(joint, -1).sum())


def fit(loss, guide, fitted_model=model):
    svi = SVI(fitted_model, guide, optimizer(), loss)
    return svi.run(jax.random.PRNGKey(1), STEPS, X, progress_bar=False).params


@pytest.fixture(scope="module")
def enumeration_optimum():
    return exact_log_likelihood(fit(TraceEnum_ELBO(), lambda x: None, nr.enum_onehot(model)))


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss",
    [Trace_ELBO(), TraceMeanField_ELBO(), Trace_ELBO(num_particles=8)],
    ids=["Trace_ELBO", "TraceMeanField_ELBO", "vectorized-particles"],
)
def test_reinmax_guides_reach_the_enumeration_optimum(loss, enumeration_optimum):
    params = fit(loss, make_guide())
    assert exact_log_likelihood(params) == pytest.approx(enumeration_optimum, abs=1.0)


@pytest.mark.slow
def test_a_hand_jitted_update_loop_reaches_it_too(enumeration_optimum):
    svi = SVI(model, make_guide(), optimizer(), TraceMeanField_ELBO())
    state = svi.init(jax.random.PRNGKey(1), X)
    update = jax.jit(svi.update)
    for _ in range(STEPS):
        state, _ = update(state, X)
    params = svi.get_params(state)
    assert exact_log_likelihood(params) == pytest.approx(enumeration_optimum, abs=1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "cls", [nr.StraightThroughOneHotCategorical, nr.GumbelStraightThroughOneHotCategorical]
)
def test_baselines_train_on_the_linear_mixture(cls, enumeration_optimum):
    params = fit(Trace_ELBO(num_particles=8), make_guide(cls))
    assert exact_log_likelihood(params) == pytest.approx(enumeration_optimum, abs=1.0)


def test_predictive_draws_one_hot_assignments():
    params = fit(TraceMeanField_ELBO(), make_guide())
    predictive = Predictive(
        model, guide=make_guide(), params=params, num_samples=7, return_sites=["z", "x"]
    )
    samples = predictive(jax.random.PRNGKey(2), X)
    assert samples["z"].shape == (7, N, K)
    np.testing.assert_array_equal(samples["z"].sum(-1), 1)


def test_elbo_is_a_bound_that_is_tight_at_the_exact_posterior():
    params = {"weights": jnp.zeros(K), "locs": jnp.array([-3.0, 0.0, 3.0]), "scales": jnp.ones(K)}
    joint = jax.nn.log_softmax(params["weights"]) + dist.Normal(
        params["locs"], params["scales"]
    ).log_prob(X[:, None])

    def exact_guide(x):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=joint))

    loss = Trace_ELBO(num_particles=10).loss(jax.random.PRNGKey(0), params, model, exact_guide, X)
    np.testing.assert_allclose(-loss, exact_log_likelihood(params), rtol=1e-10)
    uniform_guide_loss = Trace_ELBO(num_particles=10).loss(
        jax.random.PRNGKey(0),
        {**params, "assignment_logits": jnp.zeros((N, K))},
        model,
        make_guide(),
        X,
    )
    assert -uniform_guide_loss < exact_log_likelihood(params)
