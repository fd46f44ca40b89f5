r"""``TraceLocalEnum_ELBO``: every factor of the model gets the gradient of its multilinear
extension in the sampled discrete values (NumPyro).

Straight-through estimators (ReinMax included) differentiate the model's code at the sampled
one-hot corner. A factor that *selects parameters* with a one-hot (``Normal(z @ locs, 1)``,
``Bernoulli(probs=(z * phi).sum(-1))``, a transition row ``z_prev @ trans``, ``locs[z.argmax(-1)]``)
is then an arbitrary, often very non-linear, continuous extension of the model, and the guide
follows a useless or harmful gradient. This ELBO samples the guide's reparameterized discrete sites
as usual, but runs the model with those sites *enumerated in parallel* (the model's code unchanged,
as under ``TraceEnum_ELBO``; one-hot sites receive one-hot values), and contracts each factor along
the enumeration dimensions of its discrete parents with their sampled one-hot values:

.. math:: \log f(x \mid z_1, \dots, z_m) \;\to\;
    \sum_c \Big(\prod_i z_{i, c_i}\Big) \log f(x \mid c).

At the sample the loss is exactly ``Trace_ELBO``'s; the gradient in :math:`z_i` no longer depends
on :math:`z_i`, so with a guide that draws the sites independently, straight-through at
temperature 1 and ReinMax are unbiased for every factor. A factor costs one evaluation per
configuration of its *own* discrete parents: what parallel enumeration computes.

Discrete model sites that the guide does not sample are summed out exactly (funsor's plated
sum-product, as ``TraceEnum_ELBO``), so one model mixes exact enumeration with ReinMax.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import jax
import jax.numpy as jnp
from numpyro.handlers import block, replay, seed, substitute, trace
from numpyro.infer.elbo import ELBO, guess_max_plate_nesting

from ..contraction import contract_dim, weights_on_dim
from ..enumeration import _is_one_hot, restore_one_hot, show_as_index
from ..families import support_kind, unwrap
from ..reparameterized import ProbsOrLogits
from ..scan_body import ScanAwareMessenger, base_name, steps_back
from .site_context import NameFailingSite

__all__ = ["TraceLocalEnum_ELBO"]

DEFAULT_MAX_CONFIGURATIONS = 4096
_LOCAL = "_numpyro_reinmax_local"


def _one_hot_view(kind: str, value):
    """The value of a one-hot (or 0/1) site as weights over its enumerated support."""
    return value if kind == "one_hot" else jnp.stack([1 - value, value], -1)


def _is_local_candidate(site) -> bool:
    """A guide site drawn by one of this package's reparameterized discrete distributions."""
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and isinstance(unwrap(site["fn"]), ProbsOrLogits)
        and site["fn"].has_rsample
        and support_kind(site["fn"].support) is not None
    )


def _enumerable(fn, kind: str) -> bool:
    """Whether NumPyro can enumerate ``fn`` site-wise (no extra event dims over the base)."""
    return fn.event_dim == (1 if kind == "one_hot" else 0) and (
        kind == "one_hot" or fn.has_enumerate_support
    )


def factor_parents(site, names) -> dict:
    """The enumerated sites among ``names`` (guide site names) that a site's factor depends on:
    dim -> name of the dim (inside ``scan``, ``_PREV_`` names are the same site's earlier steps)."""
    return {
        dim: name
        for dim, name in site["infer"].get("dim_to_name", {}).items()
        if base_name(name) in names
    }


def _factor_shape(site) -> tuple:
    """The batch shape of a site's log-density (its distribution's and value's, broadcast)."""
    value_shape = jnp.shape(site["value"])
    return jnp.broadcast_shapes(
        site["fn"].batch_shape, value_shape[: len(value_shape) - site["fn"].event_dim]
    )


def over_budget(model_trace, names: list[str], max_configurations: int) -> set:
    """The sites among ``names`` (enumerated, in trace order) to take out of enumeration so that
    no factor's enumerated parents exceed ``max_configurations`` joint configurations: for each
    factor over the budget, its parents from the last one backwards."""
    demote = set()
    for site in model_trace.values():
        if site["type"] != "sample":
            continue
        shape = _factor_shape(site)
        sizes = {
            dim_name: shape[dim] if -dim <= len(shape) else 1
            for dim, dim_name in factor_parents(site, names).items()
        }
        order = sorted(sizes, key=lambda n: (names.index(base_name(n)), -steps_back(n)))
        while math.prod(sizes[n] for n in order) > max_configurations:
            demote.add(base_name(order.pop()))
    return demote


class _OneHotEnumeration(ScanAwareMessenger):
    """Marks sites for parallel enumeration (inside ``scan`` too); one-hot sites are shown to the
    enumeration handler as their index, and the model's code receives one-hot values."""

    @staticmethod
    def _enumerate(msg) -> None:
        msg["infer"]["enumerate"] = "parallel"
        if _is_one_hot(msg["fn"]):
            show_as_index(msg)

    def postprocess_sample(self, msg) -> None:
        restore_one_hot(msg)


class _EnumerateLocally(_OneHotEnumeration):
    """Mark the guide's reparameterized discrete sites for parallel enumeration in the model (when
    NumPyro can enumerate them and they are not scored at the sample; those take the guide's value)
    and the discrete model sites that the guide does not sample (summed out). One-hot sites are
    shown to the enumeration handler as their index; the model's code receives one-hot values.

    Inside ``scan``, the guide's value of a site carries the steps on its first axis (as the
    guide of a ``scan`` model records it); :attr:`scan_lengths` maps each enumerated site of a
    ``scan`` body to (steps unrolled by NumPyro's enumeration, number of steps)."""

    def __init__(self, fn, guide_trace, candidates: dict, scored_at_sample: set) -> None:
        super().__init__(fn)
        self.guide_trace = guide_trace
        self.candidates = candidates
        self.scored_at_sample = scored_at_sample
        self.not_enumerable: dict[str, str] = {}
        self.scan_lengths: dict[str, tuple[int, int]] = {}
        self._scan: tuple[int, int] | None = None

    def enter_scan(self, msg) -> None:
        _, _, xs, length, reverse = msg["args"]
        history = msg["kwargs"].get("history", 1)
        if reverse or history < 1:
            raise NotImplementedError(
                "TraceLocalEnum_ELBO supports scan(..., reverse=False, history>=1) only, got "
                f"reverse={reverse}, history={history}: write the loop forwards, or as a Python "
                "loop with numpyro.contrib.funsor.markov."
            )
        if length is None:
            length = jnp.shape(jax.tree.leaves(xs)[0])[0]
        self._scan = (min(2 * history - 1, length), length)
        # NumPyro's scan ignores replay while it enumerates: hand it the guide's values of the
        # other sites (continuous ones) through substitute
        drawn = {
            name: site["value"]
            for name, site in self.guide_trace.items()
            if site["type"] == "sample" and name not in self.candidates
        }
        msg["kwargs"]["substitute_stack"].append(("substitute", drawn))

    def process_sample(self, msg) -> None:
        if msg["is_observed"]:
            return
        name, fn = msg["name"], msg["fn"]
        in_scan = msg["infer"].get(self.seen_key, False)
        if name not in self.guide_trace:
            if fn.support.is_discrete:
                if not (_is_one_hot(fn) or fn.has_enumerate_support):
                    raise ValueError(
                        f"model site {name!r} is discrete, the guide does not sample it, and it "
                        f"cannot be enumerated ({type(unwrap(fn)).__name__}): sample it in the "
                        "guide (e.g. with numpyro_reinmax.infer.AutoReinMax) or write it as a "
                        "one-hot or Bernoulli site."
                    )
                self._enumerate(msg)
            return
        kind = self.candidates.get(name)
        if kind is None:
            return  # replayed from the guide
        if name not in self.scored_at_sample and _enumerable(fn, kind):
            msg["infer"][_LOCAL] = True
            if in_scan:
                self.scan_lengths[name] = self._scan
            self._enumerate(msg)
            return
        if in_scan:
            raise NotImplementedError(
                f"site {name!r} inside scan cannot be enumerated here ("
                + (
                    "over max_configurations"
                    if name in self.scored_at_sample
                    else f"{type(unwrap(fn)).__name__} with extra event dims"
                )
                + "), and TraceLocalEnum_ELBO cannot score a site inside scan at the sample: "
                "put its event dims in a plate, raise max_configurations, or write the loop as "
                "a Python loop with numpyro.contrib.funsor.markov."
            )
        if name not in self.scored_at_sample:
            self.not_enumerable[name] = type(unwrap(fn)).__name__
            self.scored_at_sample.add(name)
        msg["value"] = self.guide_trace[name]["value"]


class _AdmitForEnumeration(_OneHotEnumeration):
    """Mark candidate sites for parallel enumeration, in trace order, while the configurations
    visible at each (its enumerated parents' times its own categories) fit the budget."""

    def __init__(self, fn, candidates: dict, refused: set, budget: int, nesting: int) -> None:
        super().__init__(fn)
        self.candidates, self.refused, self.budget, self.nesting = (
            candidates,
            refused,
            budget,
            nesting,
        )

    def process_sample(self, msg) -> None:
        if msg["is_observed"]:
            return
        name, fn = msg["name"], msg["fn"]
        kind = self.candidates.get(name)
        if kind is None or name in self.refused:
            return
        shape = fn.batch_shape
        visible = math.prod(shape[: max(0, len(shape) - self.nesting)])
        categories = fn.event_shape[-1] if kind == "one_hot" else 2
        if not _enumerable(fn, kind) or visible * categories > self.budget:
            self.refused.add(name)
            return
        self._enumerate(msg)


def choose_enumerated(
    model, args, kwargs, candidates: dict, max_configurations: int, max_plate_nesting: int
) -> list[str]:
    """The candidate sites (name -> ``"one_hot"`` or ``"bernoulli"``) that exact enumeration can
    sum out with no factor over ``max_configurations`` joint configurations of enumerated
    parents: admitted greedily in trace order by tracing the (seeded) model once (more if a
    factor downstream goes over the budget, which takes its last enumerated parent out)."""
    from numpyro.contrib.funsor import enum, plate_to_enum_plate
    from numpyro.contrib.funsor import trace as packed_trace

    refused: set = set()
    while True:
        admit = _AdmitForEnumeration(
            model, candidates, refused, max_configurations, max_plate_nesting
        )
        enumerated_model = enum(admit, first_available_dim=-1 - max_plate_nesting)
        with block(), plate_to_enum_plate():
            model_trace = packed_trace(enumerated_model).get_trace(*args, **kwargs)
        enumerated = _in_trace_order(
            name
            for name, site in model_trace.items()
            if base_name(name) in candidates
            and base_name(name) not in refused
            and site["infer"].get("enumerate") == "parallel"
        )
        demote = over_budget(model_trace, enumerated, max_configurations)
        if not demote:
            return enumerated
        refused |= demote


def _in_trace_order(names) -> list[str]:
    """Distinct site names without their ``_PREV_`` prefixes, in order of first appearance."""
    return list(dict.fromkeys(base_name(name) for name in names))


class TraceLocalEnum_ELBO(ELBO):
    r"""ELBO whose model factors are contracted with the guide's sampled one-hot values along their
    parallel-enumeration dimensions: the gradient of each factor is that of its multilinear
    extension :math:`\sum_c (\prod_i z_{i, c_i}) \log f(c)` (see the module docstring).

    Use it like ``TraceMeanField_ELBO``: a guide that samples the discrete sites with this
    package's reparameterized distributions (``AutoReinMax``, ``ReinMaxOneHotCategorical``,
    ``ReinMaxBernoulli``, ...), the model unchanged. Discrete model sites the guide does not sample
    are summed out exactly. ``numpyro.plate``, subsampling, ``numpyro.contrib.funsor.markov`` (a
    Python loop), ``numpyro.contrib.control_flow.scan`` (forwards; the guide's value of a site in
    the scan body carries the steps on its first axis, as NumPyro records it), ``handlers.mask``
    and ``handlers.scale`` work.

    Args:
        num_particles: the number of particles (vectorized with ``vmap``).
        max_plate_nesting: as ``TraceEnum_ELBO`` (guessed when not given).
        max_configurations: the largest number of configurations of sampled discrete parents that
            one factor may be evaluated at (per plate element). A factor over the budget has its
            parents scored at the sample (as ``Trace_ELBO`` would) from the last enumerated one
            backwards until it fits, with one warning naming the sites. Default 4096.
        analytic_kl: score each sampled site's own prior factor and its guide term by the exact
            expectation under the guide, :math:`\sum_k q_k (\log q_k - \log p(k \mid \ldots))`
            (its parents contracted with their samples), as ``TraceMeanField_ELBO`` does. With
            ``False``, the loss on a given sample equals ``Trace_ELBO``'s. Default ``True``.

    Which guide sites were enumerated, and which are scored at the sample, is in
    :attr:`enumerated_sites` and :attr:`scored_at_sample` after the first step.
    """

    can_infer_discrete = True

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: int | None = None,
        *,
        max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
        analytic_kl: bool = True,
        vectorize_particles: bool = True,
    ) -> None:
        if not (isinstance(max_configurations, int) and max_configurations >= 1):
            raise ValueError(f"max_configurations must be an int >= 1, got {max_configurations!r}.")
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)
        self.max_plate_nesting = max_plate_nesting
        self.max_configurations = max_configurations
        self.analytic_kl = analytic_kl
        self.enumerated_sites: list[str] = []
        self.scored_at_sample: set[str] = set()
        self._scan_lengths: dict[str, tuple[int, int]] = {}

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        def particle_elbo(key):
            return self._particle_elbo(key, param_map, model, guide, args, kwargs)

        if self.num_particles == 1:
            return -particle_elbo(rng_key)
        keys = jax.random.split(rng_key, self.num_particles)
        return -jnp.mean(self.vectorize_particles_fn(particle_elbo, keys))

    def _particle_elbo(self, key, param_map, model, guide, args, kwargs):
        model_key, guide_key = jax.random.split(key)
        guide = seed(substitute(NameFailingSite(guide, "guide"), data=param_map), guide_key)
        model = seed(substitute(NameFailingSite(model, "model"), data=param_map), model_key)
        if self.max_plate_nesting is None:
            self.max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs, param_map)
        guide_trace = trace(guide).get_trace(*args, **kwargs)
        candidates = {}
        for name, site in guide_trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if _is_local_candidate(site):
                candidates[name] = support_kind(site["fn"].support)
            elif site["fn"].support.is_discrete and not site["fn"].has_rsample:
                raise ValueError(
                    f"guide site {name!r} is discrete and not reparameterized "
                    f"({type(unwrap(site['fn'])).__name__}): TraceLocalEnum_ELBO would give it "
                    "zero gradient. Use a reparameterized distribution "
                    "(numpyro_reinmax.ReinMaxOneHotCategorical, ReinMaxBernoulli, ...), or leave "
                    "the site out of the guide to sum it out."
                )
        replayed = {n: s for n, s in guide_trace.items() if n not in candidates}
        while True:
            model_trace = self._model_trace(model, guide_trace, replayed, candidates, args, kwargs)
            over_budget = self._over_budget(model_trace)
            if not over_budget:
                break
            self.scored_at_sample.update(over_budget)
            warnings.warn(
                f"TraceLocalEnum_ELBO: a factor's sampled discrete parents have more than "
                f"max_configurations={self.max_configurations} joint configurations; sites "
                f"{sorted(over_budget)} are scored at the sample from now on (their factors are "
                "not linearised in them). Raise max_configurations to enumerate them.",
                stacklevel=2,
            )
        model_log_joint = self._model_log_joint(model_trace, guide_trace)
        guide_log_density = self._guide_log_density(guide_trace)
        return model_log_joint - guide_log_density

    def _model_trace(self, model, guide_trace, replayed, candidates, args, kwargs):
        from numpyro.contrib.funsor import enum, plate_to_enum_plate
        from numpyro.contrib.funsor import trace as packed_trace

        local = _EnumerateLocally(
            replay(model, trace=replayed), guide_trace, candidates, self.scored_at_sample
        )
        enumerated = enum(local, first_available_dim=-1 - self.max_plate_nesting)
        with plate_to_enum_plate():
            model_trace = packed_trace(enumerated).get_trace(*args, **kwargs)
        if local.not_enumerable:
            warnings.warn(
                "TraceLocalEnum_ELBO: model sites "
                + ", ".join(f"{n!r} ({c})" for n, c in sorted(local.not_enumerable.items()))
                + " cannot be enumerated site-wise (extra event dims); they are scored at the "
                "sample. Put their event dims in a plate to linearise their factors.",
                stacklevel=2,
            )
        self.enumerated_sites = _in_trace_order(
            name
            for name, site in model_trace.items()
            if site["type"] == "sample" and site["infer"].get(_LOCAL)
        )
        self._scan_lengths = local.scan_lengths
        return model_trace

    def _over_budget(self, model_trace) -> set:
        return over_budget(model_trace, self.enumerated_sites, self.max_configurations)

    def _guide_weights(self, guide_trace, dim_name: str, site, log_prob, analytic: bool):
        """The sampled one-hot values (the guide's probabilities where ``analytic``) of the
        enumerated site named ``dim_name`` in a factor, as ``batch_shape + (K,)``; inside
        ``scan``, the steps that the factor's dim refers to, the steps on the factor's time dim."""
        guide_site = guide_trace[base_name(dim_name)]
        if analytic:
            weights = _guide_probs(guide_site)
        else:
            weights = _one_hot_view(support_kind(guide_site["fn"].support), guide_site["value"])
        if base_name(dim_name) not in self._scan_lengths:
            return weights, None
        unrolled, length = self._scan_lengths[base_name(dim_name)]
        if jnp.shape(weights)[0] != length:
            raise ValueError(
                f"guide site {base_name(dim_name)!r}: the model draws it in a scan of {length} "
                f"steps, but the guide's value has shape {jnp.shape(weights)}: give it the steps "
                "on its first axis (as a guide written with scan, or AutoReinMax, does)."
            )
        step = unrolled - steps_back(dim_name)  # the dim's step (the first, in the scanned part)
        time = _time_dim(site["infer"]["dim_to_name"])
        if time is None:
            return weights[step], None
        time_dim, _ = time
        return weights[step : step + jnp.shape(log_prob)[time_dim]], time_dim

    def _log_factor(self, site, guide_trace):
        """The site's log-density, contracted with its sampled-and-enumerated parents, and the
        names of its remaining dims."""
        # enumerated one-hot sites are recorded as their index (``OneHotAsIndex``)
        log_prob = site["fn"].log_prob(site["value"])
        dim_to_name = OrderedDict(site["infer"].get("dim_to_name", {}))
        for dim, parent in factor_parents(site, self.enumerated_sites).items():
            if jnp.ndim(log_prob) < -dim or jnp.shape(log_prob)[dim] == 1:
                del dim_to_name[dim]
                continue
            analytic = self.analytic_kl and parent == site["name"]
            weights, time_dim = self._guide_weights(guide_trace, parent, site, log_prob, analytic)
            log_prob = contract_dim(log_prob, weights_on_dim(weights, dim, time_dim), dim)
            del dim_to_name[dim]
        return log_prob, dim_to_name

    def _model_log_joint(self, model_trace, guide_trace):
        import funsor
        from numpyro.contrib.funsor.infer_util import compute_markov_factors

        sum_vars = frozenset(
            name
            for name, site in model_trace.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and base_name(name) not in self.enumerated_sites
            and site["infer"].get("enumerate") == "parallel"
        )
        total = 0.0
        factors, scales, plates = [], set(), set()
        # inside scan: the factors of each time dim, their earlier-step variables, and the
        # variables of the steps' summed-out sites (as NumPyro's TraceEnum_ELBO)
        time_factors, earlier_vars, names_of_site = {}, {}, {}
        history = 0
        for site in model_trace.values():
            if site["type"] != "sample":
                continue
            log_prob, dim_to_name = self._log_factor(site, guide_trace)
            names_of_site[site["name"]] = frozenset(dim_to_name.values())
            scale = 1.0 if site["scale"] is None else site["scale"]
            if sum_vars.isdisjoint(dim_to_name.values()):
                total = total + jnp.sum(scale * log_prob)
                continue
            if jnp.ndim(scale):
                raise ValueError("enumeration supports only a scalar handlers.scale")
            scales.add(float(scale))
            plates |= {f.name for f in site["cond_indep_stack"]}
            factor = funsor.to_funsor(log_prob, output=funsor.Real, dim_to_name=dim_to_name)
            time = _time_dim(dim_to_name)
            if time is None:
                factors.append(factor)
                continue
            time_dim, time_name = time
            time_var = funsor.Variable(time_name, funsor.Bint[jnp.shape(log_prob)[time_dim]])
            time_factors.setdefault(time_var, []).append(factor)
            earlier = frozenset(n for n in dim_to_name.values() if steps_back(n))
            earlier_vars[time_var] = earlier_vars.get(time_var, frozenset()) | earlier
            history = max(history, max(steps_back(n) for n in dim_to_name.values()))
        for time_var in [t for t, earlier in earlier_vars.items() if not earlier]:
            # no summed-out site links the steps: the time dim is a plate
            factors += time_factors.pop(time_var)
            del earlier_vars[time_var]
            plates.add(time_var.name)
        if time_factors:
            markov_dims = {
                time_var: frozenset().union(
                    *(
                        names_of_site[base_name(v)]
                        for v in earlier
                        if v in names_of_site.get(base_name(v), ())
                    )
                )
                for time_var, earlier in earlier_vars.items()
            }
            factors += compute_markov_factors(
                time_factors,
                earlier_vars,
                markov_dims,
                sum_vars,
                frozenset(plates),
                history,
                funsor.ops.logaddexp,
                funsor.ops.add,
            )
        if factors:
            if len(scales) != 1:
                raise ValueError(
                    "the factors of the summed-out sites must share one scale (subsampling "
                    f"factor), found {sorted(scales)}."
                )
            with funsor.interpretations.normalize:
                marginal = funsor.sum_product.sum_product(
                    funsor.ops.logaddexp,
                    funsor.ops.add,
                    factors,
                    eliminate=sum_vars | plates,
                    plates=frozenset(plates),
                )
            marginal = funsor.optimizer.apply_optimizer(marginal)
            total = total + scales.pop() * funsor.to_data(marginal)
        return total

    def _guide_log_density(self, guide_trace):
        total = 0.0
        for name, site in guide_trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if self.analytic_kl and name in self.enumerated_sites:
                log_prob = _negative_entropy(site)
            else:
                log_prob = site["fn"].log_prob(site["value"])
            scale = 1.0 if site["scale"] is None else site["scale"]
            total = total + jnp.sum(scale * log_prob)
        return total


def _time_dim(dim_to_name) -> tuple[int, str] | None:
    """The time dim of a factor of ``scan``'s scanned steps, and its name (``_time_...``)."""
    return next(((d, n) for d, n in dim_to_name.items() if n.startswith("_time")), None)


def _guide_log_probs(guide_site):
    fn = guide_site["fn"]
    return jax.nn.log_softmax(unwrap(fn)._one_hot_logits(), -1)


def _guide_probs(guide_site):
    """The guide's category probabilities at a site, ``batch_shape + (K,)``."""
    log_probs = _guide_log_probs(guide_site)
    return jnp.broadcast_to(jnp.exp(log_probs), guide_site["fn"].batch_shape + log_probs.shape[-1:])


def _negative_entropy(guide_site):
    r""":math:`\sum_k q_k \log q_k` at a guide site (masked where the guide site is masked)."""
    fn = guide_site["fn"]
    log_probs = _guide_log_probs(guide_site)
    probs = jnp.exp(log_probs)
    negative_entropy = jnp.broadcast_to(
        (probs * jnp.where(probs > 0, log_probs, 0.0)).sum(-1), fn.batch_shape
    )
    mask = getattr(fn, "_mask", None)
    return negative_entropy if mask is None else jnp.where(mask, negative_entropy, 0.0)
