r"""``TraceLocalEnum_ELBO``: every factor of the model gets the gradient of its multilinear
extension in the sampled discrete values, one variable at a time (NumPyro).

Straight-through estimators (ReinMax included) differentiate the model's code at the sampled
corner. A factor that *selects parameters* with a discrete value (``locs[z]``, ``Normal(z @ locs,
1)``, ``Bernoulli(probs=(z * phi).sum(-1))``, a transition row ``trans[z_prev]``) is then an
arbitrary, often very non-linear, continuous extension of the model, and the guide follows a
useless or harmful gradient; an integer value has no gradient at all. This ELBO samples the
guide's discrete sites as usual and scores every factor :math:`\log f(x \mid z_1, \dots, z_m)`
by its multilinear extension :math:`\sum_c (\prod_i z_{i, c_i}) \log f(x \mid c)` in the sampled
one-hot values :math:`z_i`. At the sample :math:`D` the extension is :math:`\log f(D)`, so the
loss is ``Trace_ELBO``'s; its gradient in :math:`z_i[k]` is the factor with :math:`z_i` set to
:math:`k` and every other parent at its draw, so the model runs once, batched along one
*perturbation dimension* shared by all sites (:mod:`reinmax_core.perturbation`): no
enumeration dimension per site, no cap on a factor's parents, a cost linear in the number of
sites and in the largest parent set.

With a guide that draws the sites independently, straight-through at temperature 1 is then the
local expectation gradient (Titsias and Lázaro-Gredilla, 2015) and ReinMax is unbiased too, for
every factor. Discrete model sites that the guide does not sample are summed out exactly
(funsor's plated sum-product, as ``TraceEnum_ELBO``), so one model mixes exact enumeration with
ReinMax.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from numpyro.distributions import Distribution
from numpyro.handlers import block, replay, seed, substitute, trace
from numpyro.infer.elbo import ELBO, guess_max_plate_nesting
from numpyro.ops.provenance import eval_provenance
from numpyro.primitives import Messenger

from reinmax_core.auto_estimator import scored_locally
from reinmax_core.dependencies import GUIDE_PARENTS, guide_ancestors, with_ancestors
from reinmax_core.messages import (
    NO_MAX_CONFIGURATIONS,
    infinite_loss,
    not_reparameterized,
    sampled_next_to_summed_out,
    unguided_event_dims,
    unplaced_plate,
)
from reinmax_core.options import check_count
from reinmax_core.perturbation import AT_DRAW, SiteVariables, SlotPlan, plan_slots
from reinmax_core.sites import check_same_plates

from ..categorical import _CategoricalReparameterized
from ..enumeration import _is_one_hot
from ..families import categories, support_kind, unwrap
from ..linearisation import category_log_probs, linearise, on_elements, site_values
from ..masking import select
from ..reparameterized import ProbsOrLogits
from ..scan_body import base_name, steps_back
from .conditional import ONE_HOT
from .enumeration_budget import OneHotEnumeration
from .site_context import NameFailingSite
from .site_log_prob import site_log_prob
from .structure import structure_key

__all__ = ["TraceLocalEnum_ELBO"]


class LocalDraw(NamedTuple):
    """A guide site that the ELBO linearises: its kind, its one-hot view (differentiable: the
    estimator's backward reaches the guide through it), the drawn categories, the guide's
    normalised log-probabilities, its event axes beyond the category's, its number of
    categories, and its plates."""

    kind: str
    one_hot: jax.Array
    index: jax.Array
    log_q: jax.Array
    event_dims: int
    categories: int
    plates: frozenset

    def variables(self) -> SiteVariables:
        event = jnp.shape(self.index)[jnp.ndim(self.index) - self.event_dims :]
        return SiteVariables(count=math.prod(event), categories=self.categories)


class _Scan(NamedTuple):
    """A ``scan`` whose body samples linearised sites: its history and length, and the steps
    NumPyro's enumeration unrolls before it scans."""

    history: int
    length: int
    unrolled: int


def _plate_sizes(site: dict, full_sizes: dict) -> dict[str, int]:
    """Each plate's full size (a subsampled plate replays the guide's minibatch), from
    ``full_sizes`` (plate name: size) where known."""
    frames = site["cond_indep_stack"]
    return {frame.name: full_sizes.get(frame.name, frame.size) for frame in frames}


def _declared_plate_sizes(trace: dict) -> dict[str, int]:
    """Each plate's full size as ``trace`` declares it (its ``numpyro.plate`` sites)."""
    return {name: site["args"][0] for name, site in trace.items() if site["type"] == "plate"}


def _plates(site: dict) -> frozenset:
    return frozenset(frame.name for frame in site["cond_indep_stack"])


class _DrawThroughOneHot(Messenger):
    """Draw the guide's integer sites (this package's categorical classes) through their one-hot
    estimator: the trace holds the index, :attr:`one_hots` the differentiable one-hot draw."""

    def __init__(self, fn: Callable) -> None:
        super().__init__(fn)
        self.one_hots: dict = {}

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        base = unwrap(msg["fn"])
        if not isinstance(base, _CategoricalReparameterized):
            return
        one_hot = base.one_hot_sample(msg["kwargs"]["rng_key"], msg["fn"].shape())
        self.one_hots[msg["name"]] = one_hot
        msg["value"] = jnp.argmax(one_hot, -1)
        msg["infer"] = {**msg["infer"], ONE_HOT: one_hot}  # for a structured guide's children


def _local_draw(site: dict, one_hots: dict) -> LocalDraw | None:
    """The site as a :class:`LocalDraw` if the ELBO linearises it (a guide site drawn by one of
    this package's estimator classes), else None."""
    if site["type"] != "sample" or site["is_observed"]:
        return None
    fn = site["fn"]
    base = unwrap(fn)
    if not (isinstance(base, ProbsOrLogits) and base.rule_name is not None):
        return None
    kind = support_kind(fn.support)
    value = site["value"]
    if kind == "categorical":
        one_hot, index, event_dims = one_hots[site["name"]], value, fn.event_dim
    elif kind == "bernoulli":
        one_hot = jnp.stack([1 - value, value], -1)
        index, event_dims = jax.lax.stop_gradient(value).astype(jnp.int32), fn.event_dim
    else:
        one_hot, event_dims = value, fn.event_dim - 1
        index = jnp.argmax(jax.lax.stop_gradient(value), -1)
    log_q = jax.nn.log_softmax(base._one_hot_logits(), -1)
    log_q = jnp.broadcast_to(log_q, jnp.shape(index) + jnp.shape(log_q)[-1:])
    return LocalDraw(kind, one_hot, index, log_q, event_dims, jnp.shape(one_hot)[-1], _plates(site))


class _Perturb(OneHotEnumeration):
    """Run the model with every linearised site's value from ``index_of(name, step)`` (``step``:
    the ``scan`` step, or None outside ``scan``) in the model's representation, the other guide
    sites replayed, and the discrete model sites that the guide does not sample marked for
    parallel enumeration (``placeholders``: given their first value instead)."""

    def __init__(
        self, fn: Callable, guide_trace: dict, draws: dict, index_of: Callable, placeholders: bool
    ) -> None:
        super().__init__(fn)
        self.guide_trace, self.draws, self.index_of = guide_trace, draws, index_of
        self.guide_plate_sizes = _declared_plate_sizes(guide_trace)
        self.placeholders = placeholders
        self.scans: dict[str, _Scan] = {}  # every site sampled in a scan
        self.plate_sizes: dict[str, int] = {}  # the model's plates' full sizes
        self._scan: _Scan | None = None
        self._step = None

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "plate":
            self.plate_sizes[msg["name"]] = msg["args"][0]
        super().process_message(msg)

    def enter_scan(self, msg: dict) -> None:
        body, init, xs, length, reverse = msg["args"]
        history = msg["kwargs"].get("history", 1)
        if reverse or history < 1:
            raise NotImplementedError(
                "TraceLocalEnum_ELBO supports scan(..., reverse=False, history>=1) only, got "
                f"reverse={reverse}, history={history}: write the loop forwards, or as a Python "
                "loop."
            )
        if length is None:
            length = jnp.shape(jax.tree.leaves(xs)[0])[0]
        self._scan = _Scan(history, length, min(2 * min(history, length) - 1, length))

        # the step reaches the sites through xs
        def indexed_body(carry: Any, x_and_step: tuple) -> tuple:
            x, self._step = x_and_step
            return body(carry, x)

        msg["args"] = (indexed_body, init, (xs, jnp.arange(length)), length, reverse)
        # NumPyro's scan ignores replay while it enumerates: hand it the guide's values of the
        # other sites (continuous ones) through substitute
        drawn = {
            name: site["value"]
            for name, site in self.guide_trace.items()
            if site["type"] == "sample" and name not in self.draws
        }
        msg["kwargs"]["substitute_stack"].append(("substitute", drawn))

    def process_sample(self, msg: dict) -> None:
        if msg["is_observed"]:
            if msg["infer"].get(self.seen_key, False):
                self.scans[msg["name"]] = self._scan
            return
        name, fn = msg["name"], msg["fn"]
        in_scan = msg["infer"].get(self.seen_key, False)
        if in_scan:
            self.scans[name] = self._scan
        if name in self.draws:
            check_same_plates(
                name,
                _plate_sizes(self.guide_trace[name], self.guide_plate_sizes),
                _plate_sizes(msg, self.plate_sizes),
            )
            if in_scan and self.draws[name].event_dims:
                raise NotImplementedError(
                    f"site {name!r} inside scan has extra event dims (event shape "
                    f"{fn.event_shape}): TraceLocalEnum_ELBO linearises such sites outside scan "
                    "only. Put its event dims in a plate, or write the loop as a Python loop."
                )
            if in_scan and jnp.shape(self.draws[name].index)[:1] != (self._scan.length,):
                raise ValueError(
                    f"guide site {name!r}: the model draws it in a scan of {self._scan.length} "
                    f"steps, but the guide's value has shape {jnp.shape(self.draws[name].index)}"
                    " (without a one-hot's categories): give it the steps on its first axis (as "
                    "a guide written with scan, or AutoReinMax, does)."
                )
            msg["value"] = self._value(name, fn, self._step if in_scan else None)
            msg["infer"]["enumerate"] = None
            return
        if name in self.guide_trace:
            return  # replayed (outside scan) or substituted (inside)
        if not fn.support.is_discrete:
            return
        if not (_is_one_hot(fn) or fn.has_enumerate_support):
            raise ValueError(
                f"model site {name!r} is discrete, the guide does not sample it, and it cannot "
                f"be enumerated ({type(unwrap(fn)).__name__}): sample it in the guide (e.g. with "
                "numpyro_reinmax.infer.AutoReinMax) or write it with a finite support "
                "(Categorical, Bernoulli, one-hot)."
            )
        if fn.event_dim > (1 if _is_one_hot(fn) else 0):
            raise ValueError(unguided_event_dims(name, fn.event_shape, "numpyro_reinmax"))
        if self.placeholders:
            msg["value"] = _first_value(fn)
            msg["infer"]["enumerate"] = None
        else:
            self._enumerate(msg)

    def _value(self, name: str, fn: Distribution, step: int | None) -> Array:
        draw = self.draws[name]
        kind = support_kind(fn.support)
        event_dims = fn.event_dim - (kind == "one_hot")
        if kind is None or event_dims != draw.event_dims or categories(fn, kind) != draw.categories:
            raise ValueError(
                f"site {name!r}: the guide draws {draw.categories} categories per variable with "
                f"{draw.event_dims} event dims beyond them, but the model's site is "
                f"{type(unwrap(fn)).__name__} with support {fn.support} and event shape "
                f"{fn.event_shape}: give the guide site the model's support and shape "
                "(AutoReinMax does)."
            )
        index = self.index_of(name, step) % draw.categories
        if kind == "categorical":
            return index
        dtype = draw.one_hot.dtype
        if kind == "one_hot":
            return jax.nn.one_hot(index, draw.categories, dtype=dtype)
        return index.astype(dtype)


def _first_value(fn: Distribution) -> Array:
    """A constant value of a discrete site (its first category), for provenance tracking."""
    if _is_one_hot(fn):
        k = fn.event_shape[-1]
        return jnp.broadcast_to(jax.nn.one_hot(0, k), fn.shape())
    return jnp.zeros(fn.shape(), jnp.result_type(fn.enumerate_support(expand=False)))


class _Structure(NamedTuple):
    """A model structure's factor parents, the ``scan`` of every site sampled in one, the
    slots, and the names of the model's plates. A linearised site sampled in a ``scan`` of
    history :math:`h` takes :math:`h + 1` slots (``name@p``: its steps
    :math:`t \\equiv p \\bmod (h+1)`), so a factor of one step sees each of its steps in a slot
    of its own."""

    parents: dict
    scans: dict
    plan: SlotPlan
    guide_terms: dict
    plates: frozenset

    def elements(self, site: str, phase: int | None = None, first: bool = False) -> np.ndarray:
        """The elements that set ``site``'s variables (at steps of phase ``phase``; only its
        first variable with ``first``), variable-major."""
        variables = self.plan.elements[site if phase is None else f"{site}@{phase}"]
        return np.array([e for v in variables[: 1 if first else None] for e in v], np.int32)

    def settings(self, site: str) -> np.ndarray:
        """``(E, variables)`` settings of a site; ``(phases, E, variables)`` in a ``scan``."""
        if site not in self.scans:
            return np.array(self.plan.settings(site), np.int32)
        phases = self.scans[site].history + 1
        return np.stack(
            [np.array(self.plan.settings(f"{site}@{p}"), np.int32) for p in range(phases)]
        )


class _SameSitesAsGuide(Messenger):
    """Refuses a model site whose guide site lies in a plate of another size, before the model
    uses the guide's value (the sizes the model declares: replay gives its plates the guide's)."""

    def __init__(self, fn: Callable, guide_trace: dict) -> None:
        super().__init__(fn)
        self.guide_trace = guide_trace
        self.guide_plate_sizes = _declared_plate_sizes(guide_trace)
        self.plate_sizes: dict[str, int] = {}

    def process_message(self, msg: dict) -> None:
        name = msg["name"]
        if msg["type"] == "plate":
            self.plate_sizes[name] = msg["args"][0]
            return
        if msg["type"] != "sample" or msg["is_observed"] or name not in self.guide_trace:
            return
        guide_site = self.guide_trace[name]
        if guide_site["type"] == "sample":
            check_same_plates(
                name,
                _plate_sizes(guide_site, self.guide_plate_sizes),
                _plate_sizes(msg, self.plate_sizes),
            )


def _warn_if_infinite(loss: Array) -> Array:
    """``loss``, with a warning (:func:`~reinmax_core.messages.infinite_loss`) where it is
    ``+inf``, also under ``jit`` (a host callback that runs only then)."""
    jax.lax.cond(
        jnp.isposinf(jax.lax.stop_gradient(loss)),
        lambda: jax.debug.callback(_warn_infinite),
        lambda: None,
    )
    return loss


def _warn_infinite() -> None:
    warnings.warn(infinite_loss("numpyro_reinmax"), RuntimeWarning, stacklevel=2)


class TraceLocalEnum_ELBO(ELBO):
    r"""ELBO whose model factors are scored by their multilinear extension in the guide's sampled
    discrete values, one variable at a time (see the module docstring).

    Use it like ``TraceMeanField_ELBO``, with a guide that samples the discrete sites with this
    package's estimator classes (``AutoReinMax``; one-hot ``ReinMaxOneHotCategorical``, 0/1
    ``ReinMaxBernoulli``, integer ``ReinMaxCategorical``, or another estimator's), and the model
    as written for ``TraceEnum_ELBO``: integer ``dist.Categorical`` sites with indexing
    (``locs[z]``, ``Vindex``), ``dist.Bernoulli``, one-hot sites, ``numpyro.plate``,
    subsampling, ``numpyro.contrib.funsor.markov`` (a Python loop),
    ``numpyro.contrib.control_flow.scan`` (forwards; the guide's value of a site in the scan body
    carries the steps on its first axis, as NumPyro records it), ``handlers.mask`` and
    ``handlers.scale``. Discrete model sites the guide does not sample are summed out exactly.

    Each step runs the model once, every linearised site batched along one perturbation
    dimension of :math:`1 + \sum_s (K_s - 1)` elements (slots: sites that share no factor share
    a slot; a site in a ``scan`` of history :math:`h` takes :math:`h + 1`). Which factor depends
    on which site is read by provenance tracking (``numpyro.ops.provenance``) once per structure
    of the model's arguments, at trace time. A factor that depends on several instances of a
    plated site (it lies outside the site's plate) is refused with an error: put it inside the
    plate, or give the site's plate dims to its event (``to_event``) so each instance becomes a
    variable of its own.

    Args:
        num_particles: the number of particles (vectorized with ``vmap``).
        max_plate_nesting: as ``TraceEnum_ELBO`` (guessed when not given).
        analytic_kl: score each sampled site's own prior factor and its guide term by the exact
            expectation under the guide, :math:`\sum_k q_k (\log q_k - \log p(k \mid \ldots))`
            (its parents linearised in turn), as ``TraceMeanField_ELBO`` does. With ``False``,
            the loss on a given sample equals ``Trace_ELBO``'s. Default ``True``.
        vectorize_particles: as NumPyro's ELBOs.

    After a step, :attr:`local_sites` lists the linearised sites and :attr:`perturbation` (a
    :class:`~reinmax_core.perturbation.SlotPlan`) their slots and the dimension's size.
    """

    can_infer_discrete = True

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: int | None = None,
        *,
        analytic_kl: bool = True,
        vectorize_particles: bool = True,
        **kwargs: Any,
    ) -> None:
        if "max_configurations" in kwargs:
            raise TypeError(NO_MAX_CONFIGURATIONS)
        if kwargs:
            raise TypeError(f"TraceLocalEnum_ELBO got unexpected arguments {sorted(kwargs)}.")
        if not isinstance(analytic_kl, bool):
            raise TypeError(f"analytic_kl must be True or False, got {analytic_kl!r}.")
        check_count("num_particles", num_particles)
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)
        self.max_plate_nesting = max_plate_nesting
        self.analytic_kl = analytic_kl
        self.local_sites: list[str] = []
        self.perturbation: SlotPlan | None = None
        self._structures: dict = {}
        self._warned_biased = False  # the known-bias warning, once per ELBO

    @property
    def _dim(self) -> int:
        """The perturbation dimension: left of every plate; enumeration starts left of it."""
        return -1 - self.max_plate_nesting

    def loss(
        self,
        rng_key: Array,
        param_map: dict,
        model: Callable,
        guide: Callable,
        *args: Any,
        **kwargs: Any,
    ) -> Array:
        def particle_elbo(key: Array) -> Array:
            return self._particle_elbo(key, param_map, model, guide, args, kwargs)

        if self.num_particles == 1:
            return _warn_if_infinite(-particle_elbo(rng_key))
        keys = jax.random.split(rng_key, self.num_particles)
        return _warn_if_infinite(-jnp.mean(self.vectorize_particles_fn(particle_elbo, keys)))

    def _particle_elbo(
        self,
        key: Array,
        param_map: dict,
        model: Callable,
        guide: Callable,
        args: tuple,
        kwargs: dict,
    ) -> Array:
        model_key, guide_key = jax.random.split(key)
        guide = seed(substitute(NameFailingSite(guide, "guide"), data=param_map), guide_key)
        model = seed(substitute(NameFailingSite(model, "model"), data=param_map), model_key)
        if self.max_plate_nesting is None:
            # NumPyro's guess runs the model on the guide's values: check their plates first, so
            # that a guide site in a plate of another size fails here with its name
            guide_trace = trace(guide).get_trace(*args, **kwargs)
            checked = _SameSitesAsGuide(model, guide_trace)
            self.max_plate_nesting = guess_max_plate_nesting(
                checked, guide, args, kwargs, param_map
            )
        drawing = _DrawThroughOneHot(guide)
        with scored_locally():
            guide_trace = trace(drawing).get_trace(*args, **kwargs)
        draws = {}
        for name, site in guide_trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            draw = _local_draw(site, drawing.one_hots)
            if draw is not None:
                draws[name] = draw
            elif site["fn"].support.is_discrete and not site["fn"].has_rsample:
                kind = type(unwrap(site["fn"])).__name__
                raise ValueError(not_reparameterized(name, kind, "numpyro_reinmax"))
        self.local_sites = list(draws)
        recorded = {n: guide_trace[n]["infer"].get(GUIDE_PARENTS, ()) for n in draws}
        ancestors = guide_ancestors(recorded, list(draws))
        structure = self._structure(model, guide_trace, draws, ancestors, args, kwargs)
        redrawn = {}
        if structure.guide_terms:
            noise_key = jax.random.fold_in(key, 1)
            redraw = _Redraw(guide, guide_trace, draws, structure, self._dim, noise_key)
            with block(), scored_locally():
                redraw(*args, **kwargs)
            redrawn = redraw.redrawn
        views = _views(draws, structure, self._dim)
        model_trace = self._model_trace(model, guide_trace, draws, structure, redrawn, args, kwargs)
        model_log_joint = self._model_log_joint(model_trace, draws, structure, redrawn, views)
        return model_log_joint - self._guide_log_density(
            guide_trace, draws, structure, redrawn, views
        )

    def _structure(
        self,
        model: Callable,
        guide_trace: dict,
        draws: dict,
        ancestors: dict,
        args: tuple,
        kwargs: dict,
    ) -> _Structure:
        """Factor parents (with their guide ancestors), ``scan``s and slots: read once per
        structure (the arguments' shapes, the draws' kinds and shapes, the guide's
        dependencies)."""
        key = (
            structure_key(args, kwargs, floats=True),
            self.max_plate_nesting,
            tuple(
                (n, d.kind, jnp.shape(d.index), d.categories, d.event_dims)
                for n, d in draws.items()
            ),
            tuple(ancestors.items()),
        )
        if key not in self._structures:
            parents, scans, plates = self._factor_parents(model, guide_trace, draws, args, kwargs)
            guide_terms = {name: found for name, found in ancestors.items() if found}
            structured = set(guide_terms).union(*guide_terms.values())
            if structured & set(scans):
                raise NotImplementedError(
                    f"guide sites {sorted(structured & set(scans))} are sampled inside a scan "
                    "and have guide parents or children: a structured guide draws its sites in "
                    "a Python loop. Write the chain with numpyro.contrib.funsor.markov, or leave "
                    "these sites out of dependencies."
                )
            parents = {
                factor: with_ancestors(found, ancestors, list(draws))
                for factor, found in parents.items()
            }
            variables = {}
            for name, draw in draws.items():
                if name in scans:  # a site of a scan body
                    for phase in range(scans[name].history + 1):
                        variables[f"{name}@{phase}"] = draw.variables()
                else:
                    variables[name] = draw.variables()
            plan = plan_slots(
                variables,
                [_planned(p, scans) for p in parents.values()] + list(guide_terms.values()),
            )
            self._structures[key] = _Structure(parents, scans, plan, guide_terms, plates)
        structure = self._structures[key]
        self.perturbation = structure.plan
        return structure

    def _factor_parents(
        self, model: Callable, guide_trace: dict, draws: dict, args: tuple, kwargs: dict
    ) -> tuple[dict, dict, frozenset]:
        """Every factor's linearised parents, by provenance tracking, the ``scan`` of each
        linearised site sampled in one, and the names of the model's plates; a factor outside the
        plate of a parent, or outside the ``scan`` of a parent, is refused."""
        found = {}

        def log_densities(**indices: Any) -> dict:
            def index_of(name: str, step: int | None) -> Array:
                return indices[name] if step is None else indices[name][step]

            tracked = _Perturb(model, guide_trace, draws, index_of, placeholders=True)
            with block():
                model_trace = trace(_replay_others(tracked, guide_trace, draws)).get_trace(
                    *args, **kwargs
                )
            found["trace"], found["scans"] = model_trace, tracked.scans
            return {
                name: site_log_prob(site)
                for name, site in model_trace.items()
                if site["type"] == "sample"
            }

        provenance = eval_provenance(log_densities, **{n: d.index for n, d in draws.items()})
        model_trace, scans = found["trace"], found["scans"]
        parents = {}
        for name, depends_on in provenance.items():
            site = model_trace[name]
            own = [n for n in draws if n in depends_on]
            for parent in own:
                outside = draws[parent].plates - _plates(site) - {"_time"}
                if parent in scans:
                    outside = set()
                    if name not in scans and not _in_scan(site):
                        raise NotImplementedError(
                            f"factor {name!r}, outside the scan, depends on site {parent!r}, "
                            "sampled inside it: TraceLocalEnum_ELBO cannot tell which steps it "
                            "reads. Return what it needs from the scan body and score it there."
                        )
                if outside:
                    raise ValueError(
                        f"factor {name!r} depends on site {parent!r} but lies outside its "
                        f"plate(s) {sorted(outside)}: it depends on several instances of "
                        f"{parent!r} at once, which one slot cannot perturb one at a time. Put "
                        f"{name!r} inside the plate, or declare the plate's dim an event dim "
                        f"of {parent!r} (.to_event) so that each instance is a variable of its "
                        "own."
                    )
            parents[name] = tuple(own)
        return parents, scans, frozenset(_declared_plate_sizes(model_trace))

    def _model_trace(
        self,
        model: Callable,
        guide_trace: dict,
        draws: dict,
        structure: _Structure,
        redrawn: dict,
        args: tuple,
        kwargs: dict,
    ) -> dict:
        from numpyro.contrib.funsor import enum, plate_to_enum_plate
        from numpyro.contrib.funsor import trace as packed_trace

        perturbed = {}
        for name, draw in draws.items():
            if name in redrawn:
                perturbed[name] = redrawn[name].index
                continue
            settings = jnp.asarray(structure.settings(name))
            scan = structure.scans.get(name)
            if scan is not None:
                settings = settings[jnp.arange(scan.length) % (scan.history + 1)]
            covers = scan is None and structure.plan.covers(name)
            perturbed[name] = site_values(
                draw.index, draw.event_dims, settings, self._dim, covers, time=scan is not None
            )

        def index_of(name: str, step: int | None) -> Array:
            return perturbed[name] if step is None else perturbed[name][step]

        perturb = _Perturb(model, guide_trace, draws, index_of, placeholders=False)
        enumerated = enum(
            _replay_others(perturb, guide_trace, draws), first_available_dim=self._dim - 1
        )
        try:
            with plate_to_enum_plate():
                return packed_trace(enumerated).get_trace(*args, **kwargs)
        except KeyError as error:  # NumPyro's enumeration could not give a plate its dimension
            plate = str(error.args[0]).split("\n")[0] if error.args else ""
            if plate not in structure.plates:
                raise
            raise ValueError(unplaced_plate(plate, str(error.args[0]))) from error

    def _log_factor(
        self, site: dict, draws: dict, structure: _Structure, redrawn: dict, views: dict
    ) -> tuple[Array, OrderedDict, tuple[str, ...]]:
        """The site's log-density, linearised in its sampled parents (``views``: each one's
        differences and drawn one-hot on the perturbation dimension), the names of its
        remaining dims (the perturbation dimension gone), and the parents it was linearised in
        (none where no element changes it; the site itself where its prior is taken in
        expectation under its guide, ``analytic_kl``)."""
        dim = self._dim
        name = base_name(site["name"])
        steps = _steps(site, structure.scans.get(name))
        own = name in draws and self.analytic_kl
        if own:
            log_q = redrawn[name].log_q if name in redrawn else draws[name].log_q
            log_prob = _expectation_under_guide(site, draws[name], steps, log_q)
        else:
            log_prob = _log_density(site)
        dim_to_name = OrderedDict(
            (d, n)
            for d, n in site["infer"].get("dim_to_name", {}).items()
            if d != dim or n.startswith("_time")
        )
        time = _time_dim(site["infer"].get("dim_to_name", {}))
        if jnp.ndim(log_prob) < -dim or jnp.shape(log_prob)[dim] == 1:
            return log_prob, dim_to_name, (name,) if own else ()  # no element changes it
        if time is not None and time[0] >= dim:
            return log_prob, dim_to_name, (name,) if own else ()  # steps' axis on the elements'
        bases, terms = [], []
        for parent in structure.parents.get(name, ()):
            differences, drawn = views[parent]
            scan = structure.scans.get(parent)
            if scan is None:
                bases.append((structure.elements(parent, first=True), drawn))
                if not (own and parent == name):
                    terms.append((structure.elements(parent), differences))
                continue
            for offset in range(scan.history + 1):
                rows = _scan_rows(structure, parent, scan, offset, steps, log_prob)
                if rows is None:
                    continue
                elements, first, take = rows
                bases.append((first, take(drawn)))
                if not (own and parent == name and offset == 0):
                    terms.append((elements, take(differences)))
        terms = _combined(terms)
        if not bases:
            raise RuntimeError(
                f"TraceLocalEnum_ELBO: factor {site['name']!r} changes with a sampled site that "
                "provenance tracking did not see it read. Please report this model."
            )
        parents = tuple(structure.parents.get(name, ()))
        return linearise(log_prob, dim, bases[0], terms), dim_to_name, parents

    def _model_log_joint(
        self, model_trace: dict, draws: dict, structure: _Structure, redrawn: dict, views: dict
    ) -> Array:
        import funsor
        from numpyro.contrib.funsor.infer_util import compute_markov_factors

        sum_vars = frozenset(
            name
            for name, site in model_trace.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and base_name(name) not in draws
            and site["infer"].get("enumerate") == "parallel"
        )
        total = 0.0
        factors, scales, plates, biased = [], set(), set(), {}
        # inside scan: the factors of each time dim, their earlier-step variables, and the
        # variables of the steps' summed-out sites (as NumPyro's TraceEnum_ELBO)
        time_factors, earlier_vars, names_of_site = {}, {}, {}
        history = 0
        for site in model_trace.values():
            if site["type"] != "sample":
                continue
            log_prob, dim_to_name, sampled = self._log_factor(
                site, draws, structure, redrawn, views
            )
            names_of_site[site["name"]] = frozenset(dim_to_name.values())
            scale = 1.0 if site["scale"] is None else site["scale"]
            if sum_vars.isdisjoint(dim_to_name.values()):
                total = total + jnp.sum(scale * log_prob)
                continue
            if sampled and not self._warned_biased:
                summed = sorted({base_name(n) for n in sum_vars & set(dim_to_name.values())})
                biased[base_name(site["name"])] = (tuple(sampled), tuple(summed))
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
        if biased:  # at trace time, until found: once per ELBO
            self._warned_biased = True
            warnings.warn(sampled_next_to_summed_out(biased), UserWarning, stacklevel=2)
        return total

    def _guide_log_density(
        self, guide_trace: dict, draws: dict, structure: _Structure, redrawn: dict, views: dict
    ) -> Array:
        r"""The guide's terms: for linearised sites the negative entropy under ``analytic_kl``,
        else :math:`\log q` at the draw, linear in the one-hot draw; a site with guide ancestors
        has its term linearised in them, as a model factor is."""
        total = 0.0
        for name, site in guide_trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if name in draws:
                draw = draws[name]
                log_q = redrawn[name].log_q if name in redrawn else draw.log_q
                if self.analytic_kl:
                    probs = jnp.exp(log_q)
                    log_prob = (probs * jnp.where(probs > 0, log_q, 0.0)).sum(-1)
                else:
                    log_prob = select(draw.one_hot, log_q)
                if draw.event_dims:
                    log_prob = log_prob.sum(tuple(range(-draw.event_dims, 0)))
                parents = structure.guide_terms.get(name, ())
                if parents:
                    base = (structure.elements(parents[0], first=True), views[parents[0]][1])
                    terms = _combined([(structure.elements(p), views[p][0]) for p in parents])
                    log_prob = linearise(log_prob, self._dim, base, terms)
                    log_prob = log_prob.reshape(jnp.shape(draw.index))
                mask = _mask_of(site["fn"])
                if mask is not None:
                    log_prob = jnp.where(mask, log_prob, 0.0)
            else:
                log_prob = site_log_prob(site)
            scale = 1.0 if site["scale"] is None else site["scale"]
            total = total + jnp.sum(scale * log_prob)
        return total


def _replay_others(fn: Callable, guide_trace: dict, draws: dict) -> Callable:
    """``fn`` with the guide's values of every site but the linearised ones replayed (its
    subsample indices included)."""
    return replay(fn, trace={n: s for n, s in guide_trace.items() if n not in draws})


def _planned(parents: tuple, scans: dict) -> list[str]:
    """A factor's parents as slot-plan sites (every phase of a ``scan`` site)."""
    planned = []
    for parent in parents:
        if parent in scans:
            planned += [f"{parent}@{p}" for p in range(scans[parent].history + 1)]
        else:
            planned.append(parent)
    return planned


def _in_scan(site: dict) -> bool:
    return site["name"].startswith("_PREV_") or any(
        name.startswith("_time") for name in site["infer"].get("dim_to_name", {}).values()
    )


def _steps(site: dict, scan: _Scan | None) -> int | range | None:
    """The ``scan`` steps a site's log-density covers: one step (an int) for a site NumPyro
    unrolled (``_PREV_`` names), a range for the scanned steps, None outside ``scan``."""
    if scan is None or not _in_scan(site):
        return None
    back = steps_back(site["name"])
    if back:
        return scan.unrolled - back
    return range(scan.unrolled, scan.length)


def _scan_rows(
    structure: _Structure,
    parent: str,
    scan: _Scan,
    offset: int,
    steps: int | range | None,
    log_prob: Array,
) -> tuple | None:
    """For a factor at ``steps`` (:func:`_steps`), the ``scan`` site ``offset`` steps back: its
    elements (per row of a stacked factor), its first variable's, and a function that takes the
    site's per-step arrays (:func:`~numpyro_reinmax.linearisation.on_elements` with ``time``) at
    those steps, aligned with the factor; None where no step lies that far back."""
    phases = scan.history + 1
    if steps is None:
        return None
    if isinstance(steps, int):
        step = steps - offset
        if step < 0:
            return None
        phase = step % phases
        return (
            structure.elements(parent, phase),
            structure.elements(parent, phase, first=True),
            lambda per_step: per_step[step],
        )
    start = steps.start - offset
    if start < 0:
        return None
    rows = np.arange(start, steps.stop - offset) % phases
    table = [structure.elements(parent, p) for p in range(phases)]
    first = [structure.elements(parent, p, first=True) for p in range(phases)]

    def take(per_step: Array) -> Array:
        per_step = per_step[start : steps.stop - offset]
        shape = jnp.shape(per_step)
        padding = (1,) * (jnp.ndim(log_prob) - len(shape))
        return per_step.reshape(shape[:1] + padding + shape[1:])

    return (table, rows), (first, rows), take


def _log_density(site: dict) -> Array:
    """A site's log-density at its value; for a site enumerated here (summed out), its table of
    log-probabilities with the categories moved to the site's enumeration dim: no gather of
    the table broadcast against every value (what ``log_prob`` of an enumerated value does)."""
    fn, value = site["fn"], site["value"]
    dim = site["infer"].get("name_to_dim", {}).get(site["name"])
    if dim is None or site["is_observed"] or site["infer"].get("enumerate") != "parallel":
        return fn.log_prob(value)
    table = category_log_probs(fn)  # broadcastable to batch + (K,)
    # the plates' dims too: a prior with no batch shape of its own, broadcast by its plates,
    # would otherwise be summed out once for the whole plate (as a global) instead of per element
    table = jnp.broadcast_to(table, tuple(fn.batch_shape) + jnp.shape(table)[-1:])
    batch = jnp.shape(table)[:-1]
    if len(batch) < -dim:
        table = table.reshape((1,) * (-dim - len(batch)) + jnp.shape(table))
        batch = jnp.shape(table)[:-1]
    if batch[dim] != 1 or jnp.shape(value)[jnp.ndim(value) + dim] != jnp.shape(table)[-1]:
        return fn.log_prob(value)
    moved = jnp.swapaxes(table[..., None], len(batch) + dim, -2)
    return moved.reshape(jnp.shape(moved)[:-2])


def _expectation_under_guide(
    site: dict, draw: LocalDraw, steps: int | range | None, log_q: Array
) -> Array:
    r"""A linearised site's own prior factor as its expectation under the guide,
    :math:`\sum_k q_k \log p(k \mid \ldots)`, at every element of the perturbation dimension
    (the model's distribution there carries its parents' moves, ``log_q`` its guide
    ancestors')."""
    log_p = category_log_probs(site["fn"])
    if isinstance(steps, int):
        log_q = log_q[steps]
    elif steps is not None:
        log_q = log_q[steps.start : steps.stop]
        shape = jnp.shape(log_q)
        log_q = log_q.reshape(shape[:1] + (1,) * (jnp.ndim(log_p) - len(shape)) + shape[1:])
    probs = jnp.exp(log_q)
    term = (probs * jnp.where(probs > 0, log_p, 0.0)).sum(-1)
    if draw.event_dims:
        term = term.sum(tuple(range(-draw.event_dims, 0)))
    return term


def _time_dim(dim_to_name: dict) -> tuple[int, str] | None:
    """The time dim of a factor of ``scan``'s scanned steps, and its name (``_time_...``)."""
    return next(((d, n) for d, n in dim_to_name.items() if n.startswith("_time")), None)


def _mask_of(fn: Distribution) -> Array | None:
    mask = None
    while hasattr(fn, "base_dist"):
        if getattr(fn, "_mask", None) is not None:
            mask = fn._mask if mask is None else mask & fn._mask
        fn = fn.base_dist
    return mask


def _combined(terms: list) -> list:
    """:func:`linearise`'s terms with every parent outside ``scan`` whose differences have one
    shape merged into one (one gather and product instead of one per parent: a structured
    guide gives a factor every guide ancestor of its parents)."""
    plain = [t for t in terms if isinstance(t[0], np.ndarray)]
    shapes = {jnp.shape(differences)[1:] for _, differences in plain}
    if len(plain) < 2 or len(shapes) > 1:
        return terms
    elements = np.concatenate([e for e, _ in plain])
    differences = jnp.concatenate([d for _, d in plain], 0)
    return [t for t in terms if not isinstance(t[0], np.ndarray)] + [(elements, differences)]


def _views(draws: dict, structure: _Structure, dim: int) -> dict:
    """Each draw's one-hot minus the same, detached, and its drawn categories, on axis ``dim``
    (:func:`~numpyro_reinmax.linearisation.on_elements`; steps first in a ``scan``)."""
    views = {}
    for name, draw in draws.items():
        time = name in structure.scans
        differences = draw.one_hot - jax.lax.stop_gradient(draw.one_hot)
        first = jax.nn.one_hot(draw.index, draw.categories, dtype=bool)
        first = first.reshape(jnp.shape(first)[: jnp.ndim(first) - draw.event_dims - 1] + (-1,))
        views[name] = (
            on_elements(differences, draw.event_dims, dim, time),
            on_elements(first[..., : draw.categories], 0, dim, time),
        )
    return views


class Redrawn(NamedTuple):
    """A structured guide's site along the perturbation dimension: its categories and its
    normalised log-probabilities there."""

    index: jax.Array
    log_q: jax.Array


def _gumbels_given_argmax(key: Array, log_q: Array, index: Array) -> Array:
    r"""Gumbel noise :math:`G` with :math:`\arg\max_k (\log q_k + G_k)` = ``index``, drawn
    from its distribution given that argmax (the largest perturbed value is a
    :math:`\mathrm{Gumbel}(0)` when :math:`\sum_k q_k = 1`; the others are Gumbels truncated
    below it). Categories of probability 0 get :math:`-\infty`."""
    log_q = jax.lax.stop_gradient(log_q)
    top_key, others_key = jax.random.split(key)
    top = jax.random.gumbel(top_key, jnp.shape(index), jnp.result_type(log_q))
    gumbels = log_q + jax.random.gumbel(others_key, jnp.shape(log_q), jnp.result_type(log_q))
    others = -jnp.logaddexp(-top[..., None], -gumbels)
    drawn = jax.nn.one_hot(index, jnp.shape(log_q)[-1], dtype=bool)
    perturbed = jnp.where(drawn, top[..., None], others)
    return jnp.where(jnp.isfinite(log_q), perturbed - log_q, -jnp.inf)


class _Redraw(Messenger):
    r"""Run a structured guide again along the perturbation dimension. A linearised site takes
    its element's setting where the element sets it; elsewhere it is drawn again from its
    conditional there, :math:`\arg\max_k (\log q_k(\cdot \mid \text{parents}) + G_k)`, with
    the noise :math:`G` that reproduces its draw: unchanged where no ancestor moves, a draw from
    :math:`q(\cdot \mid \text{moved parents})` where one does. So the gradient a site gets from
    its element :math:`k` is the model and guide with the site at :math:`k` and its guide
    descendants drawn given :math:`k`, independent of its own draw (straight-through at
    temperature 1 is then unbiased). Other guide sites are replayed."""

    def __init__(
        self,
        fn: Callable,
        guide_trace: dict,
        draws: dict,
        structure: _Structure,
        dim: int,
        key: Array,
    ) -> None:
        super().__init__(fn)
        self.guide_trace, self.draws, self.structure, self.dim = guide_trace, draws, structure, dim
        keys = jax.random.split(key, max(len(structure.guide_terms), 1))
        self.noise = {
            name: _gumbels_given_argmax(k, draws[name].log_q, draws[name].index)
            for k, name in zip(keys, structure.guide_terms, strict=False)
        }
        self.redrawn: dict[str, Redrawn] = {}

    def process_message(self, msg: dict) -> None:
        name = msg["name"]
        if msg["type"] != "sample" or msg["is_observed"] or name not in self.guide_trace:
            return
        if name not in self.draws:
            msg["value"] = self.guide_trace[name]["value"]
            return
        draw = self.draws[name]
        plan = self.structure.plan
        settings = jnp.asarray(self.structure.settings(name))
        index = site_values(draw.index, draw.event_dims, settings, self.dim, plan.covers(name))
        log_q = jax.nn.log_softmax(unwrap(msg["fn"])._one_hot_logits(), -1)
        if name in self.noise:
            unset = jnp.full_like(draw.index, AT_DRAW)
            setting = site_values(unset, draw.event_dims, settings, self.dim, False)
            drawn_again = jnp.argmax(log_q + self.noise[name], -1)
            index = jnp.where(setting != AT_DRAW, setting, drawn_again)
            self.redrawn[name] = Redrawn(index, log_q)
        dtype = draw.one_hot.dtype
        one_hot = jax.nn.one_hot(index, draw.categories, dtype=dtype)
        if draw.kind == "categorical":
            msg["value"] = index
            msg["infer"] = {**msg["infer"], ONE_HOT: one_hot}
        else:
            msg["value"] = one_hot if draw.kind == "one_hot" else index.astype(dtype)
