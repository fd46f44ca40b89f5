"""Distribution conformance (NumPyro): one table of cases drives shape, batch, expand, enumerate,
log_prob, jit, vmap and pytree tests, in the style of numpyro's own test_distributions.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.stats
from numpyro.infer import SVI
from numpyro.infer.autoguide import AutoNormal

import numpyro_reinmax as nr
from numpyro_reinmax.families import ESTIMATORS
from numpyro_reinmax.infer import Trace_ELBO
from reinmax_core.rules import RULES as RULE_NAMES


@dataclass
class Case:
    cls: type
    params: dict
    temperature: float | None = None
    id: str = field(default="")

    @property
    def is_bernoulli(self) -> bool:
        return issubclass(self.cls, nr.bernoulli._BernoulliReparameterized)

    def make(self, **overrides):
        kwargs = dict(self.params)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        kwargs.update(overrides)
        return self.cls(**kwargs)

    def reference(self):
        """NumPyro's own distribution with the same law (integer-valued for categoricals)."""
        if self.is_bernoulli:
            return dist.Bernoulli(**self.params)
        # NumPyro's Categorical refuses -inf logits when validating: the masked cases need it off
        return dist.Categorical(**self.params, validate_args=False)

    @property
    def parameter(self):
        return next(iter(self.params.values()))

    @property
    def shapes(self):
        shape = self.parameter.shape
        return (shape, ()) if self.is_bernoulli else (shape[:-1], shape[-1:])


MASKED = jnp.array([[0.3, -jnp.inf, -1.0, 2.0], [-jnp.inf, 0.0, 0.5, -jnp.inf]])
# Every case for the first three rules; the other rules share all but their backward with them,
# so each gets its most demanding case (masked categories; probabilities of 0 and 1).
FULL_CASE_RULES = ("reinmax", "straight_through", "gumbel_straight_through")
ONE_HOT = [ESTIMATORS[name][0] for name in FULL_CASE_RULES]
BERNOULLI = [ESTIMATORS[name][1] for name in FULL_CASE_RULES]
OTHER_RULES = [name for name in RULE_NAMES if name not in FULL_CASE_RULES]
_LOGITS = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 5))
CASES = [
    Case(nr.OneHotCategorical, {"logits": _LOGITS[0]}, id="exact-logits"),
    Case(
        nr.OneHotCategorical,
        {"probs": jnp.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])},
        id="exact-probs-zero",
    ),
    *[Case(c, {"logits": _LOGITS}, 1.5, id=f"{c.__name__}-logits") for c in ONE_HOT],
    *[
        Case(c, {"probs": jnp.array([0.1, 0.6, 0.3])}, 1.0, id=f"{c.__name__}-probs")
        for c in ONE_HOT
    ],
    *[
        Case(c, {"logits": MASKED}, 1.2, id=f"{c.__name__}-masked")
        for c in ONE_HOT + [ESTIMATORS[name][0] for name in OTHER_RULES]
    ],
    *[
        Case(c, {"logits": jnp.array([0.3, -2.0, 4.0])}, 1.3, id=f"{c.__name__}-logits")
        for c in BERNOULLI
    ],
    *[
        Case(c, {"probs": jnp.array([[0.0, 0.4], [1.0, 0.7]])}, 1.0, id=f"{c.__name__}-probs")
        for c in BERNOULLI + [ESTIMATORS[name][1] for name in OTHER_RULES]
    ],
]


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request) -> Case:
    return request.param


def test_shapes(case, key):
    d = case.make()
    batch_shape, event_shape = case.shapes
    assert d.batch_shape == batch_shape and d.event_shape == event_shape
    for sample_shape in [(), (2,), (2, 3)]:
        value = d.sample(key, sample_shape)
        assert value.shape == sample_shape + batch_shape + event_shape
        assert d.log_prob(value).shape == sample_shape + batch_shape


def test_infer_shapes(case):
    shapes = {name: value.shape for name, value in case.params.items()}
    assert case.cls.infer_shapes(**shapes) == case.shapes


def test_support_is_discrete_and_holds_the_samples(case, key):
    d = case.make()
    assert d.support.is_discrete
    assert d.support.event_dim == len(case.shapes[1])
    assert d.support(d.sample(key, (50,))).all()


def test_has_rsample(case):
    assert case.make().has_rsample == (case.cls is not nr.OneHotCategorical)


def test_expand_keeps_class_and_temperature(case, key):
    d = case.make()
    batch_shape, event_shape = case.shapes
    expanded = d.expand((2, *batch_shape))
    assert type(expanded) is case.cls
    assert expanded.batch_shape == (2, *batch_shape)
    assert expanded.temperature == d.temperature
    assert expanded.sample(key).shape == (2, *batch_shape, *event_shape)
    value = d.sample(key)
    np.testing.assert_allclose(
        expanded.log_prob(value), jnp.broadcast_to(d.log_prob(value), (2, *batch_shape))
    )


def test_enumerate_support(case):
    d = case.make()
    batch_shape, event_shape = case.shapes
    n = event_shape[0] if event_shape else 2
    assert d.enumerate_support(expand=False).shape == (n, *(1,) * len(batch_shape), *event_shape)
    values = d.enumerate_support()
    assert values.shape == (n, *batch_shape, *event_shape)
    np.testing.assert_allclose(jax.scipy.special.logsumexp(d.log_prob(values), 0), 0.0, atol=1e-6)


def test_log_prob_matches_numpyro(case):
    d = case.make()
    values = d.enumerate_support()
    indices = values if case.is_bernoulli else values.argmax(-1)
    ours, theirs = d.log_prob(values), case.reference().log_prob(indices)
    masked = jnp.isneginf(ours)
    assert (theirs[masked] < -15).all()  # NumPyro clips log(0); ours is exactly -inf
    np.testing.assert_allclose(ours[~masked], theirs[~masked], rtol=1e-5, atol=1e-6)


def test_log_prob_is_differentiable_in_the_value(case, key):
    d = case.make()
    value = d.sample(key)
    grad = jax.grad(lambda v: d.log_prob(v).sum())(value)
    assert jnp.isfinite(grad).all()
    if not case.is_bernoulli:
        logits = jax.nn.log_softmax(d.logits, -1)
        np.testing.assert_allclose(grad, jnp.where(jnp.isneginf(logits), 0.0, logits), rtol=1e-6)


def test_entropy_and_mean(case):
    d, reference = case.make(), case.reference()
    probs = np.asarray(reference.probs)
    if case.is_bernoulli:
        probs = np.stack([1 - probs, probs], -1)
    # NumPyro's Categorical entropy is NaN with -inf logits: compare with scipy's
    np.testing.assert_allclose(
        d.entropy(), scipy.stats.entropy(probs, axis=-1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(d.mean, reference.probs, rtol=1e-6)


def test_jit_and_pytree(case, key):
    d = case.make()
    leaves, treedef = jax.tree_util.tree_flatten(d)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(rebuilt) is case.cls and rebuilt.temperature == d.temperature
    value = d.sample(key)
    log_prob = jax.jit(lambda d, v: d.log_prob(v))(d, value)
    np.testing.assert_allclose(log_prob, d.log_prob(value), rtol=1e-6)
    np.testing.assert_array_equal(jax.jit(lambda d: d.sample(key))(d), value)


def test_vmap_over_parameters(case, key):
    name, value = next(iter(case.params.items()))
    stacked = jnp.stack([value, value])
    kwargs = {"temperature": case.temperature} if case.temperature is not None else {}
    log_probs = jax.vmap(
        lambda p: case.cls(**{name: p}, **kwargs).log_prob(case.make().sample(key))
    )(stacked)
    np.testing.assert_allclose(log_probs[0], case.make().log_prob(case.make().sample(key)))


def test_repr_shows_the_temperature(case):
    if case.temperature is not None:
        assert f"temperature={case.temperature}" in repr(case.make())


# ---------------------------------------------------------------- validation errors


@pytest.mark.parametrize("cls", [nr.OneHotCategorical, *ONE_HOT])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probs": jnp.array([0.2, 0.2])}, "sum to 1"),
        ({"probs": jnp.array([1.2, -0.2])}, "non-negative"),
        ({"logits": jnp.array([0.0, jnp.nan])}, "NaN"),
        ({"logits": jnp.array([0.0, jnp.inf])}, r"\+inf"),
        ({"logits": jnp.array([[0.0, 1.0], [-jnp.inf, -jnp.inf]])}, "-inf everywhere"),
        ({"logits": jnp.zeros(())}, "last axis"),
        ({}, "exactly one"),
    ],
)
def test_bad_parameters_are_clear_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("cls", ONE_HOT + BERNOULLI)
@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan"), float("inf")])
def test_bad_temperature_is_a_clear_error(cls, temperature):
    with pytest.raises(ValueError, match="temperature"):
        cls(logits=jnp.zeros(2), temperature=temperature)


@pytest.mark.parametrize("cls", BERNOULLI)
def test_bad_bernoulli_parameters(cls):
    with pytest.raises(ValueError, match="probs"):
        cls(probs=jnp.array([1.5]))
    with pytest.raises(ValueError, match="logits"):
        cls(logits=jnp.array([jnp.nan]))


def test_out_of_support_values_warn_as_numpyro_does(case):
    bad = jnp.full(case.make().sample(jax.random.PRNGKey(0)).shape, 0.5)
    with pytest.warns(UserWarning, match="Out-of-support"):
        case.make().log_prob(bad)


def test_validation_is_skipped_under_jit():
    jax.jit(lambda p: nr.ReinMaxOneHotCategorical(probs=p).probs)(jnp.array([0.2, 0.2]))


def test_continuous_autoguides_refuse_one_hot_sites_with_a_clear_error():
    """A one-hot support is discrete: AutoNormal cannot silently build a continuous guide."""

    def model():
        loc = numpyro.sample("loc", dist.Normal(0, 1))
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(3)))
        numpyro.sample("x", dist.Normal(loc + z[0], 1.0), obs=1.0)

    guide = AutoNormal(nr.enum_onehot(model))
    svi = SVI(nr.enum_onehot(model), guide, numpyro.optim.Adam(0.1), Trace_ELBO())
    with pytest.raises(NotImplementedError, match="one-hot site is discrete"):
        svi.init(jax.random.PRNGKey(0))


def test_integer_enumeration_without_enum_onehot_is_a_clear_error():
    """NumPyro's NUTS enumerates discrete sites with integer indices; a one-hot site says what to
    do instead of scoring them."""

    def model():
        with numpyro.plate("pair", 2):
            z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(3)))
            numpyro.sample(
                "x", nr.OneHotMixture(z, dist.Normal(jnp.arange(3.0), 1.0)), obs=jnp.ones(2)
            )

    kernel = numpyro.infer.NUTS(model)
    mcmc = numpyro.infer.MCMC(kernel, num_warmup=5, num_samples=5, progress_bar=False)
    with pytest.raises(ValueError, match="enum_onehot"), pytest.warns(FutureWarning):
        mcmc.run(jax.random.PRNGKey(0))


@pytest.mark.parametrize("temperature", [1.0, 1.6])
def test_bernoulli_backward_is_the_two_category_rule(temperature, key):
    """ReinMax: (2 a (1 - a) - s (1 - s) / 2) g with a = (sigmoid(l / tau) + b) / 2, s = sigmoid(l);
    straight-through: sigmoid'(l / tau) g / tau."""
    logits = jnp.array([-2.0, -0.3, 0.5, 1.7])
    g = jnp.array([0.7, -1.2, 0.4, 2.0])
    s, s_tau = jax.nn.sigmoid(logits), jax.nn.sigmoid(logits / temperature)
    for cls in [nr.ReinMaxBernoulli, nr.StraightThroughBernoulli]:
        b = cls(logits=logits, temperature=temperature).sample(key)
        grad = jax.grad(
            lambda x, cls=cls: (cls(logits=x, temperature=temperature).sample(key) * g).sum()
        )(logits)
        if cls is nr.ReinMaxBernoulli:
            a = (s_tau + b) / 2
            expected = (2 * a * (1 - a) - s * (1 - s) / 2) * g
        else:
            expected = s_tau * (1 - s_tau) * g / temperature
        np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", ONE_HOT + BERNOULLI)
def test_vmap_over_a_distribution_maps_its_parameters(cls, key):
    """The temperature is static: ``jax.vmap(f)(d)`` maps logits, not the scalar temperature."""
    one_hot = cls in ONE_HOT
    logits = jax.random.normal(key, (4, 3) if one_hot else (4,))
    d = cls(logits=logits, temperature=1.3)
    value = jnp.eye(3)[1] if one_hot else jnp.asarray(1.0)
    np.testing.assert_allclose(jax.vmap(lambda d: d.log_prob(value))(d), d.log_prob(value))
    keys = jax.random.split(key, 4)
    batched = jax.vmap(lambda d, k: d.sample(k))(d, keys)
    assert batched.shape == d.batch_shape + d.event_shape
    # a traced temperature (a schedule under jit) is data and still works
    assert jax.jit(lambda t: cls(logits=logits, temperature=t).temperature)(1.7) == 1.7
