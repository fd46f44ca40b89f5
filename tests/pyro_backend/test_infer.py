"""pyro_reinmax.infer: the ReinMax reparameterizer and the AutoReinMax autoguide."""

import warnings
from operator import attrgetter

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import (
    SVI,
    Predictive,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceMeanField_ELBO,
    config_enumerate,
)
from pyro.infer.autoguide import AutoDelta
from pyro.optim import ClippedAdam

import pyro_reinmax as pr
from pyro_reinmax.infer import (
    AutoReinMax,
    ReinMaxReparam,
    ReinMaxStrategy,
    TraceLocalEnum_ELBO,
)
from pyro_reinmax.infer import TraceMeanField_ELBO as ExactKLMeanField_ELBO
from reinmax_core.rules import RULES

K, N = 3, 60
X = torch.cat([torch.randn(20) - 4, torch.randn(20), torch.randn(20) + 5])


def mixture(x, subsample_size=None, prior=pr.OneHotCategorical):
    weights = pyro.param("weights", torch.zeros(K))
    locs = pyro.param("locs", torch.tensor([-3.0, 0.0, 3.0]))
    with pyro.plate("data", len(x), subsample_size=subsample_size) as index:
        z = pyro.sample("z", prior(logits=weights))
        pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x[index])


def hand_written_guide(x, subsample_size=None):
    with pyro.plate("data", len(x), subsample_size=subsample_size):
        logits = pyro.param("assignment_logits", torch.zeros(len(x), K), event_dim=1)
        pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=logits))


def exact_log_likelihood(x) -> float:
    weights, locs = pyro.param("weights").detach(), pyro.param("locs").detach()
    joint = weights.log_softmax(-1) + dist.Normal(locs, 1.0).log_prob(x[:, None])
    return joint.logsumexp(-1).sum().item()


def train(model, guide, loss, steps=600, *args):
    """SVI from a fixed seed; the guide is called once first, so that an autoguide's one-time
    prototype trace does not shift the random draws of training."""
    pyro.clear_param_store()
    poutine.block(guide)(*args)
    pyro.set_rng_seed(1)
    optimizer = ClippedAdam(lambda name, _: {"lr": 0.2 if "logits" in name else 0.05})
    svi = SVI(model, guide, optimizer, loss)
    losses = [svi.step(*args) for _ in range(steps)]
    return losses


# ------------------------------------------------------------------------------------ reparam


def test_reparam_gives_the_reinmax_class_its_gradient():
    logits = torch.tensor([[0.3, -1.0, 0.5], [1.2, 0.0, -0.4]], requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5])

    def model():
        with pyro.plate("rows", 2):
            return pyro.sample("z", dist.OneHotCategorical(logits=logits))

    pyro.set_rng_seed(3)
    trace = poutine.trace(poutine.reparam(model, config={"z": ReinMaxReparam(1.3)})).get_trace()
    site = trace.nodes["z"]
    assert isinstance(site["fn"], pr.ReinMaxOneHotCategorical) and site["fn"].temperature == 1.3
    (grad,) = torch.autograd.grad((site["value"] * weights).sum(), logits)
    pyro.set_rng_seed(3)
    direct = pr.ReinMaxOneHotCategorical(logits=logits, temperature=1.3).rsample()
    (expected,) = torch.autograd.grad((direct * weights).sum(), logits)
    assert torch.equal(site["value"], direct)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("estimator", list(RULES))
def test_strategy_reparameterizes_every_discrete_latent_site_and_nothing_else(estimator):
    def model():
        loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
        with pyro.plate("rows", 4):
            z = pyro.sample("z", dist.OneHotCategorical(probs=torch.tensor([0.5, 0.0, 0.5])))
            b = pyro.sample(
                "b",
                dist.Bernoulli(logits=torch.zeros(4)).mask(torch.tensor([True, False, True, True])),
            )
            pyro.sample(
                "y", dist.OneHotCategorical(logits=torch.zeros(3)), obs=torch.eye(3)[[0, 1, 2, 0]]
            )
            pyro.sample("x", dist.Normal(loc + z[:, 0] + b, 1.0), obs=torch.zeros(4))

    trace = poutine.trace(
        poutine.reparam(model, config=ReinMaxStrategy(estimator=estimator))
    ).get_trace()
    one_hot_class, bernoulli_class, _ = pr.families.ESTIMATORS[estimator]
    assert isinstance(trace.nodes["z"]["fn"], one_hot_class)
    assert isinstance(trace.nodes["b"]["fn"].base_dist, bernoulli_class)
    assert type(trace.nodes["loc"]["fn"]) is dist.Normal
    assert type(trace.nodes["y"]["fn"]) is dist.OneHotCategorical  # observed: untouched
    assert (trace.nodes["z"]["value"][:, 1] == 0).all()  # the zero probability stays masked


def test_model_side_enumeration_still_works_after_the_reparam():
    def model():
        with pyro.plate("data", len(X)):
            z = pyro.sample("z", dist.OneHotCategorical(logits=torch.tensor([0.2, -0.1, 0.4])))
            pyro.sample(
                "x", pr.OneHotMixture(z, dist.Normal(torch.tensor([-4.0, 0.0, 5.0]), 1.0)), obs=X
            )

    reparameterized = poutine.reparam(model, config=ReinMaxStrategy())
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(reparameterized), lambda: None)
    expected = TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(model), lambda: None)
    assert loss == pytest.approx(expected, rel=1e-10)


def test_reparam_refuses_sites_without_a_counterpart():
    def model():
        pyro.sample("z", dist.Categorical(logits=torch.zeros(3)))

    with pytest.raises(ValueError, match="OneHotCategorical"):
        poutine.trace(poutine.reparam(model, config={"z": ReinMaxReparam()})).get_trace()


# ------------------------------------------------------------------------------------ autoguide


@pytest.mark.slow
def test_autoguide_reproduces_the_hand_written_guide_on_the_mixture():
    hand = train(mixture, hand_written_guide, TraceMeanField_ELBO(), 600, X)
    hand_metric = exact_log_likelihood(X)
    auto = train(mixture, AutoReinMax(mixture), TraceMeanField_ELBO(), 600, X)
    auto_metric = exact_log_likelihood(X)
    # the same parameters, initial values and draws: the same run, to rounding
    assert auto == pytest.approx(hand, rel=1e-5)
    assert auto_metric == pytest.approx(hand_metric, abs=1e-3)


@pytest.mark.slow
def test_autoguide_with_subsampling_matches_the_hand_written_subsampled_guide():
    hand = train(mixture, hand_written_guide, Trace_ELBO(), 300, X, 20)
    auto_guide = AutoReinMax(mixture)
    auto = train(mixture, auto_guide, Trace_ELBO(), 300, X, 20)
    assert auto == pytest.approx(hand, rel=1e-5)
    assert pyro.param("AutoReinMax.0.logits.z").shape == (N, K)  # one row per data point


def test_subsampling_updates_only_the_rows_in_the_minibatch():
    guide = AutoReinMax(mixture)
    train(mixture, guide, Trace_ELBO(), 1, X, 10)
    pyro.set_rng_seed(5)
    loss = Trace_ELBO().differentiable_loss(mixture, guide, X, 10)
    logits = pyro.param("AutoReinMax.0.logits.z").unconstrained()
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad.abs().sum(-1) > 0).sum() == 10


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, K)

    def forward(self, x, subsample_size=None):
        return self.layer(x[:, None])


def amortised_guide(encoder):
    def guide(x, subsample_size=None):
        pyro.module("encoder", encoder)
        with pyro.plate("data", len(x)):
            pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=encoder(x)))

    return guide


@pytest.mark.slow
def test_amortised_autoguide_reproduces_the_hand_written_amortised_guide():
    torch.manual_seed(0)
    encoder = Encoder()
    initial = {k: v.clone() for k, v in encoder.state_dict().items()}
    hand = train(mixture, amortised_guide(encoder), TraceMeanField_ELBO(), 300, X)
    encoder.load_state_dict(initial)
    auto_guide = AutoReinMax(mixture, encoders={"z": encoder})
    auto = train(mixture, auto_guide, TraceMeanField_ELBO(), 300, X)
    assert auto == pytest.approx(hand, rel=1e-5)
    assert any("encoder" in name for name in pyro.get_param_store())


def test_continuous_sites_go_to_the_companion_and_median_quantiles_predictive_work():
    def model(x):
        spread = pyro.sample("spread", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", pr.OneHotCategorical(logits=torch.zeros(2)))
            b = pyro.sample("b", dist.Bernoulli(0.5))
            locs = torch.tensor([-1.0, 1.0]) * spread + b[..., None]
            pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x)

    guide = AutoReinMax(model, estimator="straight_through", temperature=1.4)
    train(model, guide, Trace_ELBO(), 50, X)
    trace = poutine.trace(guide).get_trace(X)
    assert isinstance(trace.nodes["z"]["fn"], pr.StraightThroughOneHotCategorical)
    assert trace.nodes["z"]["fn"].temperature == 1.4
    assert isinstance(trace.nodes["b"]["fn"], pr.StraightThroughBernoulli)
    median = guide.median(X)
    assert set(median) == {"spread", "z", "b"}
    assert torch.equal(median["z"].sum(-1), torch.ones(N))
    assert set(guide.quantiles([0.5], X)) == {"spread"}  # discrete sites have no quantiles
    samples = Predictive(model, guide=guide, num_samples=3)(X)
    assert samples["z"].shape == (3, N, 2) and samples["x"].shape == (3, N)
    map_guide = AutoReinMax(model, continuous_guide=AutoDelta)
    train(model, map_guide, Trace_ELBO(), 5, X)
    assert set(map_guide.median(X)) == {"spread", "z", "b"}


def test_integer_sites_get_integer_guide_sites_and_others_a_clear_error():
    def model():
        pyro.sample("z", dist.Categorical(logits=torch.zeros(3)))
        pyro.sample("n", dist.Binomial(4, 0.3))

    guide = AutoReinMax(model)
    trace = pyro.poutine.trace(guide).get_trace()
    assert type(trace.nodes["z"]["fn"]).__name__ == "ReinMaxCategorical"
    assert trace.nodes["z"]["value"].dtype == torch.long
    assert guide.median()["n"].dtype == torch.long

    def counts():
        pyro.sample("k", dist.Poisson(3.0))

    with pytest.raises(ValueError, match=r"finite support"):
        AutoReinMax(counts)()


def test_torch_one_hot_prior_warns_about_trace_elbo_once():
    with pytest.warns(UserWarning, match="pathwise gradient is lost") as record:
        AutoReinMax(mixture)(X, None, dist.OneHotCategorical)
    assert len([w for w in record if "pathwise gradient" in str(w.message)]) == 1


@pytest.mark.parametrize("elbo", [ExactKLMeanField_ELBO, TraceLocalEnum_ELBO])
def test_no_warning_about_the_torch_prior_under_elbos_that_score_it_exactly(elbo):
    guide = AutoReinMax(mixture)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        elbo(max_plate_nesting=1).loss(mixture, guide, X, None, dist.OneHotCategorical)


def test_bad_arguments():
    with pytest.raises(ValueError, match="estimator"):
        AutoReinMax(mixture, estimator="rein")
    with pytest.raises(ValueError, match="temperature"):
        AutoReinMax(mixture, temperature=0.0)


def test_score_function_family_gives_a_reinforce_guide():
    from pyro.infer import TraceGraph_ELBO

    guide = AutoReinMax(mixture, estimator="score_function")
    losses = train(mixture, guide, TraceGraph_ELBO(), 20, X)
    site = poutine.trace(guide).get_trace(X).nodes["z"]
    assert type(site["fn"]) is pr.OneHotCategorical and not site["fn"].has_rsample
    assert all(torch.isfinite(torch.tensor(losses)))
    with pytest.raises(ValueError, match="estimator"):
        ReinMaxReparam(estimator="score_function")


def topic_model(words, documents):
    """A small LDA: 3 topics over 6 words, 4 documents; a discrete topic per token."""
    with pyro.plate("topics", 3):
        topic_words = pyro.sample("topic_words", dist.Dirichlet(torch.full((6,), 0.5)))
    with pyro.plate("documents", 4):
        doc_topics = pyro.sample("doc_topics", dist.Dirichlet(torch.ones(3)))
    with pyro.plate("tokens", len(words)):
        z = pyro.sample("z", pr.OneHotCategorical(probs=doc_topics[documents]))
        pyro.sample("w", pr.OneHotMixture(z, dist.Categorical(topic_words)), obs=words)


@pytest.mark.slow
def test_autoguide_reproduces_a_hand_composed_guide_on_a_topic_model():
    """Continuous globals (AutoNormal) and local discrete topics: AutoReinMax against the same
    guide composed by hand; the same draws, the same run."""
    from pyro.infer.autoguide import AutoNormal

    generator = torch.Generator().manual_seed(0)
    words = torch.randint(0, 6, (40,), generator=generator)
    documents = torch.arange(40) % 4
    continuous = AutoNormal(poutine.block(topic_model, hide=["z"]))

    def hand(words, documents):
        # a plain function: AutoGuideList plus a hand-written part would fail on the plates
        # ("Multiple sample sites named 'tokens'"), the composition AutoReinMax exists for
        result = continuous(words, documents)
        with pyro.plate("tokens", len(words)):
            logits = pyro.param("hand.logits.z", torch.zeros(len(words), 3), event_dim=1)
            result["z"] = pyro.sample("z", pr.ReinMaxOneHotCategorical(logits=logits))
        return result

    losses_hand = train(topic_model, hand, TraceMeanField_ELBO(), 100, words, documents)
    losses_auto = train(
        topic_model, AutoReinMax(topic_model), TraceMeanField_ELBO(), 100, words, documents
    )
    assert losses_auto == pytest.approx(losses_hand, rel=1e-6)


SEQUENCE = torch.tensor([-1.2, 0.3, 1.5, -0.4, 2.0], dtype=torch.float64)
SEQUENCE_LOCS = torch.tensor([-1.0, 1.0], dtype=torch.float64)


def variable_length_model(length):
    """A site per observed step: the set of sites depends on the data."""
    for t in range(length):
        z = pyro.sample(f"z_{t}", pr.OneHotCategorical(logits=torch.zeros(2, dtype=torch.float64)))
        pyro.sample(f"x_{t}", pr.OneHotMixture(z, dist.Normal(SEQUENCE_LOCS, 1.0)), obs=SEQUENCE[t])


def test_sites_that_depend_on_the_data_get_their_own_logits():
    """Built from a call with 3 sites, trained on calls with 2, 3 and 5: every site's guide
    reaches its exact posterior p(z_t | x_t) (mean-field is exact here: the sites are
    independent given the fixed locations)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoReinMax(variable_length_model)
    svi = pyro.infer.SVI(
        variable_length_model, guide, pyro.optim.Adam({"lr": 0.05}), ExactKLMeanField_ELBO()
    )
    for step in range(600):
        svi.step([3, 5, 2][step % 3])
    modes = guide.median(5)
    assert sorted(modes) == [f"z_{t}" for t in range(5)]
    for t in range(5):
        logits = attrgetter(f"z_{t}")(guide[0].logits).detach()
        log_posterior = dist.Normal(SEQUENCE_LOCS, 1.0).log_prob(SEQUENCE[t])
        torch.testing.assert_close(logits.softmax(-1), log_posterior.softmax(-1), atol=0.05, rtol=0)
    pyro.clear_param_store()
