"""One-hot sites inside NumPyro's ``scan``: exact enumeration (``enum_onehot``), TraceLocalEnum_ELBO
and AutoReinMax. Models are written as NumPyro's HMM examples write them (``scan`` over time, a
plate inside the body, the previous one-hot carried). References: NumPyro's own exact log-density
under enumeration (``numpyro.contrib.funsor.log_density``, as NUTS uses it) on the integer-valued
``Categorical`` model, hand-written multilinear models, and the marginal over the summed-out chain
by brute force.

NumPyro's ``numpyro.infer.TraceEnum_ELBO`` is not a reference here: with ``scan`` it returns a wrong
value (a loss of 20.08 instead of 12.46 nats on the HMM below, where ``log_density`` agrees with
brute force; NumPyro 0.22), pinned below.

Values and gradients are compared under ``jit``, as SVI computes them: one compilation per
program instead of one per eager operation (a quarter of the time on a cold compilation cache).
The loss at the sample and the refusals run eagerly."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan
from numpyro.contrib.funsor import enum, log_density
from numpyro.handlers import seed, trace
from numpyro.infer import TraceEnum_ELBO

import numpyro_reinmax as nr
from numpyro_reinmax.infer import AutoReinMax, Trace_ELBO, TraceLocalEnum_ELBO

K = 3
X = jnp.array([[-1.7, 0.4], [0.2, 0.1], [2.1, -0.3], [0.3, 0.9]])  # (steps, sequences)
T, N = X.shape
PARAMS = {
    "init": jnp.array([0.2, -0.1, 0.3]),
    "locs": jnp.array([-1.0, 0.5, 1.5]),
    "trans": jnp.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]),
    "shift": jnp.array([-0.5, 0.7]),
    "switch": jnp.array([[0.9, 0.1], [0.25, 0.75]]),
    "q": jnp.linspace(-1.0, 1.0, T * N * K).reshape(T, N, K),
}


def _params(*names):
    return (numpyro.param(name, PARAMS[name]) for name in names)


def one_hot_step(locs, trans):
    """One step of the one-hot HMM: the previous state selects the transition row, the state its
    mean (a scan body)."""

    def step(z_prev, x_t):
        with numpyro.plate("sequences", N):
            z = numpyro.sample("z", nr.OneHotCategorical(probs=z_prev @ trans))
            numpyro.sample("x", dist.Normal(z @ locs, 1.0), obs=x_t)
        return z, None

    return step


def hmm(x):
    """A one-hot HMM; the first step's previous value is the softmax of ``init``."""
    init, locs, trans = _params("init", "locs", "trans")
    scan(one_hot_step(locs, trans), jnp.broadcast_to(jax.nn.softmax(init), (N, K)), x)


def hmm_categorical(x):
    """The same HMM with integer states, as NumPyro's examples write it."""
    init, locs, trans = _params("init", "locs", "trans")

    def step(z_prev, x_t):
        with numpyro.plate("sequences", N):
            probs = trans[z_prev] / trans[z_prev].sum(-1, keepdims=True)  # as the one-hot's
            z = numpyro.sample("z", dist.Categorical(probs), infer={"enumerate": "parallel"})
            numpyro.sample("x", dist.Normal(locs[z], 1.0), obs=x_t)
        return z, None

    # the first state's prior is the softmax of init: a step of its own, outside the scan
    with numpyro.plate("sequences", N):
        z0 = numpyro.sample(
            "z0", dist.Categorical(jax.nn.softmax(init)), infer={"enumerate": "parallel"}
        )
        numpyro.sample("x0", dist.Normal(locs[z0], 1.0), obs=x[0])
    scan(step, z0, x[1:])


def hmm_first_step_apart(x):
    """The one-hot HMM with its first step outside the scan, to compare with
    ``hmm_categorical``."""
    init, locs, trans = _params("init", "locs", "trans")
    with numpyro.plate("sequences", N):
        z0 = numpyro.sample("z0", nr.OneHotCategorical(logits=init))
        numpyro.sample("x0", dist.Normal(z0 @ locs, 1.0), obs=x[0])
    scan(one_hot_step(locs, trans), z0, x[1:])


def no_guide(x):
    pass


@partial(jax.jit, static_argnums=0)
def exact_log_likelihood(model, params):
    """log p(x) with every discrete site summed out, by NumPyro's enumerated log-density (under
    ``jit``)."""
    return log_density(enum(model, first_available_dim=-2), (X,), {}, params)[0]


def jit_value_and_grad(function, params, *arguments):
    """``jax.value_and_grad(function)(params, *arguments)`` under ``jit``."""
    return jax.jit(jax.value_and_grad(function))(params, *arguments)


def test_enum_onehot_sums_out_scan_sites_like_numpyro_sums_out_categorical_ones():
    params = {n: PARAMS[n] for n in ["init", "locs", "trans"]}
    model = nr.enum_onehot(hmm_first_step_apart)
    value, grads = jit_value_and_grad(lambda p: exact_log_likelihood(model, p), params)
    expected, expected_grads = jit_value_and_grad(
        lambda p: exact_log_likelihood(hmm_categorical, p), params
    )
    assert float(value) == pytest.approx(float(expected), abs=1e-9)
    for name in params:
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-9, atol=1e-9)


def test_numpyro_trace_enum_elbo_is_wrong_with_scan():
    """Why the references here are ``log_density`` and brute force, not ``TraceEnum_ELBO``."""
    params = {n: PARAMS[n] for n in ["init", "locs", "trans"]}

    @jax.jit
    def brute_force_log_likelihood(params):
        trans = params["trans"] / params["trans"].sum(-1, keepdims=True)
        paths = []
        for path in itertools.product(range(K), repeat=T):
            log_prior = jnp.log(jax.nn.softmax(params["init"])[path[0]])
            log_prior += sum(jnp.log(trans[path[t - 1], path[t]]) for t in range(1, T))
            means = params["locs"][jnp.array(path)][:, None]
            paths.append(log_prior + dist.Normal(means, 1.0).log_prob(X).sum(0))
        return jax.nn.logsumexp(jnp.stack(paths), 0).sum()

    brute_force = brute_force_log_likelihood(params)
    expected = exact_log_likelihood(hmm_categorical, params)
    assert float(expected) == pytest.approx(float(brute_force), abs=1e-9)
    trace_enum = TraceEnum_ELBO(max_plate_nesting=1).loss(
        jax.random.PRNGKey(0), params, hmm_categorical, no_guide, X
    )
    assert abs(float(trace_enum) + float(brute_force)) > 1.0
    # the figures the traps guide (docs/guides/traps.md) and the module docstring quote
    assert (float(trace_enum), -float(brute_force)) == pytest.approx((20.08, 12.46), abs=0.005)


def guide(x):
    """The mean-field guide of a scan model: the steps on the first axis of one site."""
    q = numpyro.param("q", PARAMS["q"])
    with numpyro.plate("sequences", N):
        numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=q))


def state_factor(init, trans, z, own):
    """The states' log-prior, linear in each step's ``own`` weights (its sampled one-hot, or the
    guide's probabilities) at the sampled previous state ``z[t-1]`` (the first step's previous
    value is the softmax of ``init``, carried into the scan)."""
    log_trans = jnp.log(trans / trans.sum(-1, keepdims=True))  # as OneHotCategorical(probs)
    first_probs = jax.nn.softmax(init) @ trans
    first = own[0] @ jnp.log(first_probs / first_probs.sum())
    return first.sum() + jnp.einsum("tnj,jk,tnk->", z[:-1], log_trans, own[1:])


def hmm_multilinear(x):
    """``hmm`` written by hand as its multilinear extension in the guide's site ``z``: a flat site
    (constant log-mass), the transition factor bilinear in consecutive states, linear emissions."""
    init, locs, trans = _params("init", "locs", "trans")
    with numpyro.plate("steps", T, dim=-2), numpyro.plate("sequences", N):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(K)))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x)
    numpyro.factor("transitions", state_factor(init, trans, z, z))


def _value_and_grad(elbo, model, key):
    return jit_value_and_grad(
        lambda p, key: elbo.loss(key, p, model, guide, X), PARAMS, jax.random.PRNGKey(key)
    )


@pytest.mark.parametrize("key", [0, 1])
def test_scan_factors_get_the_gradient_of_the_hand_written_multilinear_model(key):
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss, grads = _value_and_grad(elbo, hmm, key)
    expected, expected_grads = _value_and_grad(Trace_ELBO(), hmm_multilinear, key)
    assert elbo.local_sites == ["z"]
    assert float(loss) == pytest.approx(float(expected) - T * N * np.log(K), abs=1e-9)
    for name in PARAMS:
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-9, atol=1e-9)


def test_scan_analytic_kl_is_the_expectation_of_each_own_factor():
    r"""analytic_kl: each step's own factor is :math:`\sum_k q_{t,k} \log p(k \mid z_{t-1})` at
    the sampled previous state, and the guide term is :math:`\sum_k q \log q` (computed by hand on
    the guide's draw for the same key)."""
    key = jax.random.PRNGKey(3)

    def reference(params):
        draw = trace(seed(numpyro.handlers.substitute(guide, params), jax.random.split(key)[1]))
        z = draw.get_trace(X)["z"]["value"]
        log_q = jax.nn.log_softmax(params["q"], -1)
        own = state_factor(params["init"], params["trans"], z, jnp.exp(log_q))
        emissions = (z * dist.Normal(params["locs"], 1.0).log_prob(X[..., None])).sum()
        return -(own + emissions - (jnp.exp(log_q) * log_q).sum())

    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    loss, grads = jit_value_and_grad(lambda p: elbo.loss(key, p, hmm, guide, X), PARAMS)
    expected, expected_grads = jit_value_and_grad(reference, PARAMS)
    assert float(loss) == pytest.approx(float(expected), abs=1e-9)
    for name in PARAMS:
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-9, atol=1e-9)


def factorial_hmm(x):
    """Two chains: the one-hot states (sampled by the guide) and binary regimes (summed out)."""
    init, locs, trans, shift, switch = _params("init", "locs", "trans", "shift", "switch")

    def step(carry, x_t):
        z_prev, w_prev = carry
        with numpyro.plate("sequences", N):
            z = numpyro.sample("z", nr.OneHotCategorical(probs=z_prev @ trans))
            w = numpyro.sample("w", dist.Bernoulli(probs=switch[w_prev, 1]))
            w = w.astype(jnp.int32)
            numpyro.sample("x", dist.Normal(z @ locs + shift[w], 1.0), obs=x_t)
        return (z, w), None

    start = (jnp.broadcast_to(jax.nn.softmax(init), (N, K)), jnp.zeros(N, jnp.int32))
    scan(step, start, x)


def factorial_marginal(params, z):
    """log p(x, z) with the regimes summed out, by brute force over the 2^T regime paths, with
    the emissions linear in z (their multilinear extension) and the transitions bilinear."""
    states = state_factor(params["init"], params["trans"], z, z)
    log_switch = jnp.log(jnp.stack([1 - params["switch"][:, 1], params["switch"][:, 1]], -1))
    paths = []
    for regimes in itertools.product([0, 1], repeat=T):
        regimes = jnp.array(regimes)
        prior = log_switch[jnp.concatenate([jnp.zeros(1, int), regimes[:-1]]), regimes].sum()
        means = params["locs"] + params["shift"][regimes][:, None, None]  # (T, 1, K)
        paths.append(prior + (z * dist.Normal(means, 1.0).log_prob(X[..., None])).sum((0, 2)))
    return states + jax.nn.logsumexp(jnp.stack(paths), 0).sum()


@pytest.mark.parametrize("key", [0, 5])
def test_scan_hybrid_sums_out_the_other_chain_exactly(key):
    def reference(params, key):
        draw = trace(seed(numpyro.handlers.substitute(guide, params), jax.random.split(key)[1]))
        site = draw.get_trace(X)["z"]
        return -(
            factorial_marginal(params, site["value"]) - site["fn"].log_prob(site["value"]).sum()
        )

    def elbo_loss(params, key):
        return elbo.loss(key, params, factorial_hmm, guide, X)

    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss, grads = jit_value_and_grad(elbo_loss, PARAMS, jax.random.PRNGKey(key))
    expected, expected_grads = jit_value_and_grad(reference, PARAMS, jax.random.PRNGKey(key))
    assert elbo.local_sites == ["z"]
    assert float(loss) == pytest.approx(float(expected), abs=1e-9)
    for name in PARAMS:
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-8, atol=1e-9)


def test_scan_sites_the_guide_leaves_out_are_summed_out_exactly():
    elbo = TraceLocalEnum_ELBO(max_plate_nesting=1)
    loss = jax.jit(lambda p: elbo.loss(jax.random.PRNGKey(0), p, factorial_hmm, no_guide, X))(
        PARAMS
    )
    assert elbo.local_sites == []
    expected = exact_log_likelihood(nr.enum_onehot(factorial_hmm), PARAMS)
    assert float(loss) == pytest.approx(-float(expected), abs=1e-9)


def test_autoreinmax_covers_scan_sites():
    """AutoReinMax on a scan model with a plate in its body: one logit per step, sequence and
    state; ``enumerate="auto"`` sums both chains out (the loss is then -log p(x))."""
    sampled = AutoReinMax(factorial_hmm, enumerate=["w"])
    params = {**PARAMS, "auto_z_logits": PARAMS["q"]}
    seed(sampled, 0)(X)
    assert sampled.enumerated_sites == ["w"]
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)

    @partial(jax.jit, static_argnums=1)
    def elbo_loss(params, guide):
        return elbo.loss(jax.random.PRNGKey(2), params, factorial_hmm, guide, X)

    expected = elbo_loss(PARAMS, guide)
    assert float(elbo_loss(params, sampled)) == pytest.approx(float(expected), abs=1e-9)

    summed = AutoReinMax(factorial_hmm, enumerate="auto")
    seed(summed, 0)(X)
    assert summed.enumerated_sites == ["z", "w"]
    loss = elbo_loss(PARAMS, summed)
    expected = exact_log_likelihood(nr.enum_onehot(factorial_hmm), PARAMS)
    assert float(loss) == pytest.approx(-float(expected), abs=1e-9)


def test_a_reversed_scan_is_refused_with_what_to_do():
    def backwards(x):
        def step(z_prev, x_t):
            z = numpyro.sample("z", nr.OneHotCategorical(probs=z_prev @ PARAMS["trans"]))
            numpyro.sample("x", dist.Normal(z @ PARAMS["locs"], 1.0), obs=x_t)
            return z, None

        scan(step, jnp.eye(K)[0], x[:, 0], reverse=True)

    def steps_guide(x):
        numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=PARAMS["q"][:, 0]))

    with pytest.raises(NotImplementedError, match=r"reverse=False.*Python loop"):
        TraceLocalEnum_ELBO(max_plate_nesting=0).loss(
            jax.random.PRNGKey(0), {}, backwards, steps_guide, X
        )


def test_a_guide_value_without_the_steps_axis_is_refused():
    def one_step_guide(x):
        with numpyro.plate("sequences", N):
            numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=PARAMS["q"][0]))

    with pytest.raises(ValueError, match=r"scan of 4 steps.*steps on its first axis"):
        TraceLocalEnum_ELBO(max_plate_nesting=1).loss(
            jax.random.PRNGKey(0), PARAMS, hmm, one_step_guide, X
        )


def both_chains_guide(x):
    q = numpyro.param("q", PARAMS["q"])
    with numpyro.plate("sequences", N):
        numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=q))
        numpyro.sample("w", nr.ReinMaxBernoulli(logits=q[..., 0] - q[..., 1]))


@pytest.mark.filterwarnings("ignore:Found plate statements in guide but not model")  # scan's
@pytest.mark.parametrize("key", [0, 1])
def test_scan_loss_at_the_sample_equals_trace_elbo(key):
    """One-hot and Bernoulli sites of a scan body, both sampled by the guide: on a given draw the
    loss is Trace_ELBO's (NumPyro replays the guide's values into the scan body there)."""
    elbo = TraceLocalEnum_ELBO(analytic_kl=False, max_plate_nesting=1)
    loss = elbo.loss(jax.random.PRNGKey(key), PARAMS, factorial_hmm, both_chains_guide, X)
    assert elbo.local_sites == ["z", "w"]
    expected = Trace_ELBO().loss(
        jax.random.PRNGKey(key), PARAMS, factorial_hmm, both_chains_guide, X
    )
    assert float(loss) == pytest.approx(float(expected), abs=1e-9)


def test_infer_discrete_refuses_scan_with_what_works():
    from numpyro_reinmax.infer import infer_discrete

    sampler = infer_discrete(hmm, first_available_dim=-2, rng_key=jax.random.PRNGKey(0))
    with pytest.raises(NotImplementedError, match=r"does not support .*scan.*markov"):
        trace(sampler).get_trace(X)


def test_a_scan_site_with_extra_event_dims_is_refused_with_what_to_do():
    """A guide-sampled site with an extra event dim inside scan: NumPyro's scan cannot stack its
    values along the perturbation dimension (outside scan such sites are linearised per
    variable): a clear error."""

    def pairs(x):
        def step(carry, x_t):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros((2, K))).to_event(1))
            numpyro.sample("x", dist.Normal((z @ PARAMS["locs"]).sum(), 1.0), obs=x_t)
            return carry, None

        scan(step, 0.0, x[:, 0])

    def pairs_guide(x):
        logits = PARAMS["q"][:, :2]  # (steps, 2, K)
        numpyro.sample("z", nr.ReinMaxOneHotCategorical(logits=logits).to_event(1))

    elbo = TraceLocalEnum_ELBO(max_plate_nesting=0)
    with pytest.raises(NotImplementedError, match=r"'z' inside scan.*extra event dims.*in a plate"):
        elbo.loss(jax.random.PRNGKey(0), {}, pairs, pairs_guide, X)
