"""``AutoReinMax``: a one-line guide for models with discrete latent sites (Pyro).

Every latent site with a finite support of categories gets a guide site of the same kind and shape:
``ReinMaxCategorical`` for an integer site (``Categorical``, ``Binomial``: values ``0..K-1``),
``ReinMaxOneHotCategorical`` for a one-hot one, ``ReinMaxBernoulli`` for a 0/1 one (or another
estimator's class)
with learnable logits, one row per plate element for local sites (subsampled with the plate, as
``AutoNormal`` does), or logits from an encoder of the model's arguments (amortisation). The
continuous latent sites go to a companion autoguide (``AutoNormal`` by default). The two parts
share their plates, so subsampled plates are drawn once per step.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from operator import attrgetter
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide, AutoGuideList, AutoNormal
from pyro.infer.autoguide.utils import deep_setattr
from pyro.infer.inspect import get_dependencies
from pyro.nn.module import PyroModule, PyroParam
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import Tensor
from torch.distributions import Distribution, constraints

from reinmax_core.auto_estimator import AUTO, is_scored_locally, resolve_estimator
from reinmax_core.dependencies import (
    GUIDE_PARENTS,
    check_dependencies,
    feeds_guide,
    guide_parents,
    table_logits,
    uses_table,
)
from reinmax_core.messages import structured_event_dims
from reinmax_core.options import DEFAULT_MAX_CONFIGURATIONS, check_max_configurations

from ..families import categories, check_estimator, site_distribution, support_kind, unwrap
from ..one_hot import OneHotCategorical
from ..validation import check_temperature
from .conditional import RecordedOneHot, additive_logits, drawn_one_hot, promoting_einsum
from .enumeration_budget import choose_enumerated
from .scoring import priors_scored_exactly
from .structure import structure_key

__all__ = ["AutoReinMax"]

Encoders = Callable | dict[str, Callable] | None
Enumerate = str | list[str] | tuple[str, ...] | None
Dependencies = str | dict[str, list[str]] | None
logger = logging.getLogger("pyro_reinmax")


def _discrete_latent_sites(trace: Trace) -> dict:
    """The latent sites with a discrete support, checked: a finite support of categories only
    (integers ``0..K-1``, one-hot, Bernoulli)."""
    sites = {}
    for name, site in trace.iter_stochastic_nodes():
        fn = site["fn"]
        if not fn.support.is_discrete:
            continue
        if support_kind(fn.support) is None:
            kind = type(unwrap(fn)).__name__
            raise ValueError(
                f"site {name!r} is discrete with support {fn.support} ({kind}): AutoReinMax "
                "covers sites with a finite support of categories (Categorical and Binomial "
                "integers 0..K-1, one-hot, Bernoulli). Give the site a finite support (e.g. "
                "truncate it to a Categorical), or hide it from the guide with "
                "poutine.block and sample it with a guide of your own."
            )
        sites[name] = site
    return sites


def _warn_about_stock_one_hot_priors(sites: dict) -> None:
    """Once per guide, and not under an ELBO that scores discrete priors exactly."""
    if priors_scored_exactly():
        return
    for name, site in sites.items():
        base = unwrap(site["fn"])
        if isinstance(base, torch.distributions.OneHotCategorical) and not isinstance(
            base, OneHotCategorical
        ):
            warnings.warn(
                f"site {name!r} has torch's OneHotCategorical as its prior, whose log_prob takes "
                "an argmax: under pyro.infer.Trace_ELBO (or any ELBO scoring the prior at the "
                "sample) the prior's pathwise gradient is lost. "
                "pyro_reinmax.infer.TraceMeanField_ELBO and TraceLocalEnum_ELBO score it exactly; "
                "otherwise use pyro_reinmax.OneHotCategorical in the model or "
                "poutine.reparam(model, config=pyro_reinmax.infer.ReinMaxStrategy()).",
                stacklevel=5,
            )


def _parameter_dtype(fn: Distribution) -> torch.dtype:
    """The floating dtype of an integer-valued distribution's parameters."""
    base = unwrap(fn)
    for name in ("logits", "probs"):
        value = base.__dict__.get(name)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dtype
    return torch.get_default_dtype()


def _plates(site: dict) -> frozenset:
    return frozenset(frame.name for frame in site["cond_indep_stack"] if frame.vectorized)


def _cell_dims(site: dict) -> int:
    """The trailing axes of a site's logits beyond its batch: 1 (categories), 0 for 0/1 sites."""
    return 0 if support_kind(site["fn"].support) == "bernoulli" else 1


class _DiscreteGuide(AutoGuide):
    """The discrete part of :class:`AutoReinMax`."""

    def __init__(
        self,
        model: Callable,
        *,
        estimator: str,
        temperature: float,
        encoders: Encoders,
        dependencies: Dependencies = None,
        full_model: Callable | None = None,
    ) -> None:
        super().__init__(model)
        self.estimator = estimator
        self.temperature = temperature
        self._encoders = encoders
        self._dependencies = dependencies
        self._full_model = full_model
        self.parents: dict[str, tuple[str, ...]] = {}

    def _encoder(self, name: str) -> Callable | None:
        if isinstance(self._encoders, dict):
            return self._encoders.get(name)
        return self._encoders

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        self._sites = _discrete_latent_sites(self.prototype_trace)
        self.logits = PyroModule()
        self.weights = PyroModule()
        self._add_parents(self._sites, args, kwargs)
        for name, site in self._sites.items():
            self._add_logits(name, site)
        self._structures = {structure_key(args, kwargs): list(self._sites)}

    def _add_parents(self, sites: dict, args: tuple, kwargs: dict) -> None:
        """Each site's guide parents (:func:`~reinmax_core.dependencies.guide_parents`); a site
        seen before must keep its parents."""

        def posterior() -> dict:
            try:
                with poutine.block():
                    found = get_dependencies(self._full_model, args, kwargs)
            except Exception as error:
                raise ValueError(
                    'AutoReinMax(dependencies="model") could not read the model\'s dependencies '
                    f"(pyro.infer.inspect.get_dependencies failed: {error}). Pass them as a dict "
                    "{site: [parent sites]} instead."
                ) from error
            return found["posterior_dependencies"]

        plates = {name: _plates(site) for name, site in sites.items()}
        parents, dropped = guide_parents(self._dependencies, list(sites), plates, posterior)
        if dropped:
            logger.info(
                "AutoReinMax: leaving out dependencies on sites in plates their child is not in "
                "(site, upstream): %s",
                dropped,
            )
        for name, given in parents.items():
            known = self.parents.setdefault(name, given)
            if known != given:
                raise ValueError(
                    f"site {name!r} depends on {list(given)} for these arguments but on "
                    f"{list(known)} for earlier ones: a structured guide keeps one set of parents "
                    "per site. Pass dependencies as a dict."
                )
            if given:
                self._check_structured(name, sites[name], [sites[p] for p in given])
        self._feeders = feeds_guide(self.parents)

    def _check_structured(self, name: str, site: dict, parent_sites: list) -> None:
        for which, checked in [(name, site)] + list(
            zip(self.parents[name], parent_sites, strict=True)
        ):
            fn = checked["fn"]
            if fn.event_dim > (support_kind(fn.support) == "one_hot"):
                raise ValueError(structured_event_dims(which, name, self.parents[name]))

    def _parent_categories(self, name: str) -> list[int]:
        return [
            categories(self._sites[p]["fn"], support_kind(self._sites[p]["fn"].support))
            for p in self.parents[name]
        ]

    def _add_logits(self, name: str, site: dict) -> None:
        shape = list(site["value"].shape)
        event_dim = site["fn"].event_dim
        for frame in site["cond_indep_stack"]:
            shape[frame.dim - event_dim] = frame.full_size or frame.size
        dtype = site["value"].dtype
        kind = support_kind(site["fn"].support)
        if kind == "categorical":  # integer values: logits get a category axis
            shape.append(categories(site["fn"], kind))
            event_dim += 1
            dtype = _parameter_dtype(site["fn"])
        device = site["value"].device
        parent_categories = self._parent_categories(name)
        at = len(shape) - _cell_dims(site)  # parent axes go before the categories
        if uses_table(parent_categories, self._encoder(name) is not None):
            shape[at:at] = parent_categories
            event_dim += len(parent_categories)
        elif parent_categories:
            weights = shape[:at] + [sum(parent_categories)] + shape[at:]
            init = torch.zeros(weights, dtype=dtype, device=device)
            deep_setattr(self.weights, name, PyroParam(init, constraints.real, event_dim + 1))
        if self._encoder(name) is not None:
            return
        init = torch.zeros(shape, dtype=dtype, device=device)
        deep_setattr(self.logits, name, PyroParam(init, constraints.real, event_dim))

    def _current_sites(self, args: tuple, kwargs: dict) -> list[str]:
        """The discrete sites of the model for these arguments. A model whose sites depend on the
        data (sequences of different lengths) is traced once per structure of its arguments
        (:func:`structure_key`); new sites get their own logits."""
        key = structure_key(args, kwargs)
        names = self._structures.get(key)
        if names is None:
            with poutine.block():
                trace = poutine.trace(self.model).get_trace(*args, **kwargs)
            sites = _discrete_latent_sites(prune_subsample_sites(trace))
            self._add_parents(sites, args, kwargs)
            for name, site in sites.items():
                if name not in self._sites:
                    self._sites[name] = site
                    self._add_logits(name, site)
            names = self._structures[key] = list(sites)
        return names

    def _site_distribution(
        self, name: str, site: dict, parent_one_hots: list, *args: Any, **kwargs: Any
    ) -> Distribution:
        encoder = self._encoder(name)
        if encoder is None:
            logits = attrgetter(name)(self.logits)
        else:
            if isinstance(encoder, torch.nn.Module):
                pyro.module(f"{self._pyro_name}.encoder.{name}", encoder)
            logits = encoder(*args, **kwargs)
        if parent_one_hots:
            cell_dims = _cell_dims(site)
            if uses_table(self._parent_categories(name), encoder is not None):
                logits = table_logits(logits, parent_one_hots, cell_dims, promoting_einsum)
            else:
                weights = attrgetter(name)(self.weights)
                logits = additive_logits(logits, weights, parent_one_hots, cell_dims)
        kind = support_kind(site["fn"].support)
        estimator = resolve_estimator(self.estimator)
        fn = site_distribution(kind, estimator, self.temperature, logits=logits)
        extra_event_dims = site["fn"].event_dim - fn.event_dim
        return fn.to_event(extra_event_dims) if extra_event_dims else fn

    def _draw(self, choose: Callable, *args: Any, **kwargs: Any) -> dict:
        """Every site in the model's order, each conditioned on its parents' draws, its value
        chosen by ``choose(name, fn, infer)``. Under ``TraceLocalEnum_ELBO`` the parents' draws
        enter as constants: the ELBO moves each site's guide descendants with it instead
        (:mod:`pyro_reinmax.infer.local_enum`)."""
        locally = is_scored_locally()
        plates = self._create_plates(*args, **kwargs)
        result, one_hots = {}, {}
        for name in self._current_sites(args, kwargs):
            site = self._sites[name]
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    if frame.vectorized:
                        stack.enter_context(plates[frame.name])
                parents = [one_hots[p] for p in self.parents[name]]
                if locally:
                    parents = [one_hot.detach() for one_hot in parents]
                fn = self._site_distribution(name, site, parents, *args, **kwargs)
                recorded = RecordedOneHot()
                with recorded:
                    infer = {GUIDE_PARENTS: self.parents[name]} if self.parents[name] else {}
                    result[name] = choose(name, fn, infer)
            if name in self._feeders:
                kind = support_kind(site["fn"].support)
                k = categories(site["fn"], kind)
                one_hots[name] = drawn_one_hot(kind, result[name], k, recorded.one_hot)
        return result

    def forward(self, *args: Any, **kwargs: Any) -> dict:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        return self._draw(
            lambda name, fn, infer: pyro.sample(name, fn, infer=infer), *args, **kwargs
        )

    @torch.no_grad()
    def median(self, *args: Any, **kwargs: Any) -> dict:
        """The mode of each discrete site (one-hot of the largest logit; 1 where p > 1/2); in a
        structured guide, of each site's conditional given its parents' modes."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with poutine.block():
            return self._draw(lambda name, fn, infer: unwrap(fn).mode, *args, **kwargs)

    def quantiles(self, quantiles: Tensor | list[float], *args: Any, **kwargs: Any) -> dict:
        """Discrete sites have no quantiles: an empty dict (the continuous part reports its own)."""
        return {}


class AutoReinMax(AutoGuideList):
    r"""A guide for every latent site of ``model``: ReinMax sites for the discrete ones, a companion
    autoguide for the continuous ones.

    Each discrete latent site gets :math:`q(z) = \operatorname{Categorical}
    (\operatorname{softmax}(\phi))` in the site's own representation (integer, one-hot or 0/1)
    drawn by the estimator. One-hot and 0/1 sites are reparameterized under
    any ELBO; integer sites get their estimator under
    :class:`~pyro_reinmax.infer.TraceLocalEnum_ELBO` (the ELBO that fits a model as written for
    enumeration, ``locs[z]`` and all). :math:`\phi` is a learnable tensor of the site's shape
    (full plate sizes, a category axis added for an integer site; subsampled with the plate), or
    ``encoder(*args, **kwargs)`` for amortised sites.

    Args:
        model: a Pyro model.
        estimator: ``"auto"`` (default): straight-through under
            :class:`~pyro_reinmax.infer.TraceLocalEnum_ELBO`, where with these
            independent sites it is ReinMax averaged over each site's own draw (both unbiased at
            temperature 1, its variance never higher: :mod:`reinmax_core.auto_estimator`), and
            ReinMax under every other ELBO. Or ``"reinmax"``, any other rule of the estimator table
            (``"straight_through"``, ``"gumbel_straight_through"``, ``"gapped_straight_through"``,
            ``"gumbel_rao"``, ``"reinmax_rao"``, ``"reinmax_cv"``, each with its default
            options), or ``"score_function"`` (non-reparameterized sites, for REINFORCE with
            ``TraceGraph_ELBO``).
        temperature: the estimator's temperature (its backward only).
        encoders: ``None`` (learn logits per site), one callable for every discrete site, or a dict
            from site name to callable; a callable maps the model's ``*args, **kwargs`` to the
            site's logits (``torch.nn.Module`` encoders are registered with ``pyro.module``).
        continuous_guide: builds the guide of the continuous sites from the model with the
            discrete sites hidden, called as ``continuous_guide(model)``: an autoguide class or
            factory (``functools.partial(AutoNormal, init_scale=0.01)``), ``AutoNormal`` by
            default.
        enumerate: discrete sites to leave out of the guide, to be summed out exactly by the ELBO
            (:class:`~pyro_reinmax.infer.TraceLocalEnum_ELBO` sums out every discrete model site
            that the guide does not sample): a list of site names, or ``"auto"``, which traces the
            model once and admits sites in trace order while no factor's enumerated parents exceed
            ``max_configurations`` joint configurations (sites with extra event dims are never
            enumerated). The choice is in :attr:`enumerated_sites` and logged once (logger
            ``"pyro_reinmax"``, level INFO). ``None`` (default): every discrete site is sampled.
        max_configurations: the budget of ``enumerate="auto"`` (default 4096).
        dependencies: ``None`` (default): the discrete sites are drawn independently (mean
            field). ``"model"``: a structured guide, each site drawn in the model's order given the
            draws of the sampled discrete sites it depends on in the posterior
            (``pyro.infer.inspect.get_dependencies``; upstream sites in a plate the site is not
            in are left out, logged at INFO). Or a dict ``{site: [parent sites]}``. The parents
            are in :attr:`parents` (of the discrete part, ``guide[0]`` when it comes first). A
            site's logits are a table over its parents' joint configurations (at most
            :data:`~reinmax_core.dependencies.TABLE_CONFIGURATIONS`; per plate element for
            plated sites), else an additive layer of their one-hots, added to the encoder's
            output for amortised sites (:mod:`reinmax_core.dependencies`). Which estimators are
            unbiased: under :class:`~pyro_reinmax.infer.TraceLocalEnum_ELBO`, which draws each
            site's guide descendants again when it moves, straight-through and ReinMax at
            temperature 1 give unbiased gradients for every site's logits (tested against
            exact enumeration on two- and three-site chains and a site with two parents; not
            where a sampled site shares a factor with a site left to enumeration, a known bias
            of the local ELBO described in its guide), and
            ``"auto"`` picks straight-through (the lower variance of the two). Under the other
            ELBOs the gradient passes through the children's logits pathwise, where every
            straight-through estimator is biased (ReinMax to second order); ``"score_function"``
            (REINFORCE with ``TraceGraph_ELBO``) is unbiased everywhere.
        create_plates: as for every Pyro autoguide (for subsampling).

    ``median()`` returns modes for discrete sites and the companion's medians; ``quantiles()``
    the companion's quantiles (discrete sites have none). ``Predictive(model, guide=guide)`` works.

    The logits start at 0 (uniform). To start elsewhere, call the guide once and assign the
    discrete part's logits, ``guide[0].logits.z = torch.tensor(...)`` (``guide[0]`` when the
    model's first latent site is discrete; the part is the one with a ``logits`` attribute).
    """

    def __init__(
        self,
        model: Callable,
        *,
        estimator: str = AUTO,
        temperature: float = 1.0,
        encoders: Encoders = None,
        continuous_guide: Callable = AutoNormal,
        enumerate: Enumerate = None,
        max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
        dependencies: Dependencies = None,
        create_plates: Callable | None = None,
    ) -> None:
        super().__init__(model, create_plates=create_plates)
        if not (enumerate is None or enumerate == "auto" or isinstance(enumerate, list | tuple)):
            raise ValueError(
                f'enumerate must be None, "auto" or a list of site names, got {enumerate!r}.'
            )
        self._enumerate = enumerate
        self._max_configurations = check_max_configurations(max_configurations)
        self.enumerated_sites: list[str] = []
        self._part_options = {
            "estimator": check_estimator(estimator, allow_auto=True),
            "temperature": check_temperature(temperature),
            "encoders": encoders,
            "dependencies": check_dependencies(dependencies),
            "full_model": model,
        }
        self._continuous_guide = continuous_guide

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        discrete_sites = _discrete_latent_sites(self.prototype_trace)
        _warn_about_stock_one_hot_priors(discrete_sites)
        self.enumerated_sites = self._choose_enumerated(discrete_sites, args, kwargs)
        sampled = [name for name in discrete_sites if name not in self.enumerated_sites]
        continuous = [
            name
            for name, site in self.prototype_trace.iter_stochastic_nodes()
            if name not in discrete_sites and not site_is_subsample(site)
        ]
        parts = []
        enumerated = set(self.enumerated_sites)

        def discrete_latent(msg: dict) -> bool:  # by support: also sites that later calls add
            return (
                msg["type"] == "sample"
                and not msg["is_observed"]
                and not site_is_subsample(msg)
                and msg["fn"].support.is_discrete
            )

        if sampled:
            exposed = poutine.block(
                self.model,
                expose_fn=lambda msg: discrete_latent(msg) and msg["name"] not in enumerated,
            )
            parts.append((sampled[0], _DiscreteGuide(exposed, **self._part_options)))
        if continuous:
            companion = self._continuous_guide(poutine.block(self.model, hide_fn=discrete_latent))
            parts.append((continuous[0], companion))
        # the part whose first site comes first in the model runs first (mean-field checks)
        order = list(self.prototype_trace.nodes)
        for _, part in sorted(parts, key=lambda first_and_part: order.index(first_and_part[0])):
            self.append(part)

    def _choose_enumerated(self, discrete_sites: dict, args: tuple, kwargs: dict) -> list[str]:
        if self._enumerate is None:
            return []
        if self._enumerate != "auto":
            unknown = sorted(set(self._enumerate) - set(discrete_sites))
            if unknown:
                raise ValueError(
                    f"enumerate names {unknown}, which are not discrete latent sites of the model "
                    f"(those are {sorted(discrete_sites)})."
                )
            chosen = [name for name in discrete_sites if name in self._enumerate]
        else:
            candidates = {n: support_kind(s["fn"].support) for n, s in discrete_sites.items()}
            nesting = max(
                (
                    -frame.dim
                    for site in self.prototype_trace.nodes.values()
                    if site["type"] == "sample"
                    for frame in site["cond_indep_stack"]
                    if frame.vectorized
                ),
                default=0,
            )
            chosen = choose_enumerated(
                self.model, args, kwargs, candidates, self._max_configurations, nesting
            )
        logger.info(
            "AutoReinMax: summing out %s exactly (enumeration); sampling %s with estimator %r",
            chosen,
            [n for n in discrete_sites if n not in chosen],
            self._part_options["estimator"],
        )
        return chosen
