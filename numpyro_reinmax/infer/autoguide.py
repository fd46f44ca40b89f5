"""``AutoReinMax``: a one-line guide for models with discrete latent sites (NumPyro).

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
import math
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
from jax import Array
from jax.typing import ArrayLike
from numpyro import handlers
from numpyro.distributions import Distribution
from numpyro.infer.autoguide import AutoGuide, AutoNormal
from numpyro.infer.inspect import get_dependencies

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
from ..validation import check_temperature
from .conditional import RecordedOneHot, additive_logits, drawn_one_hot
from .enumeration_budget import choose_enumerated
from .structure import structure_key

__all__ = ["AutoReinMax"]

Encoders = Callable | dict[str, Callable] | None
Enumerate = str | list[str] | tuple[str, ...] | None
Dependencies = str | dict[str, list[str]] | None
logger = logging.getLogger("numpyro_reinmax")


class AutoReinMax(AutoGuide):
    r"""A guide for every latent site of ``model``: ReinMax sites for the discrete ones, a companion
    autoguide for the continuous ones.

    Each discrete latent site gets :math:`q(z) = \operatorname{Categorical}
    (\operatorname{softmax}(\phi))` in the site's own representation (integer, one-hot or 0/1)
    drawn by the estimator. One-hot and 0/1 sites are reparameterized under
    any ELBO; integer sites get their estimator under
    :class:`~numpyro_reinmax.infer.TraceLocalEnum_ELBO` (the ELBO that fits a model as written for
    enumeration, ``locs[z]`` and all). :math:`\phi` is a learnable array of the site's shape
    (full plate sizes, a category axis added for an integer site; subsampled with the plate), or
    ``encoder(*args, **kwargs)`` for amortised sites.

    Args:
        model: a NumPyro model.
        estimator: ``"auto"`` (default): straight-through under
            :class:`~numpyro_reinmax.infer.TraceLocalEnum_ELBO`, where with these
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
            site's logits and registers its own parameters (``numpyro.param``, or
            ``numpyro.contrib.module.flax_module`` and the like).
        continuous_guide: builds the guide of the continuous sites from the model with the
            discrete sites hidden, called as ``continuous_guide(model, prefix=...,
            create_plates=...)``: an autoguide class, ``AutoNormal`` by default. Its set-up
            draws the discrete sites from their prior; where such a draw rules out the data, it
            is set up again with the observations hidden.
        enumerate: discrete sites to leave out of the guide, to be summed out exactly by the ELBO
            (:class:`~numpyro_reinmax.infer.TraceLocalEnum_ELBO` sums out every discrete model
            site that the guide does not sample): a list of site names, or ``"auto"``, which
            traces the model once and admits sites in trace order while no factor's enumerated
            parents exceed ``max_configurations`` joint configurations (sites with extra event
            dims are never enumerated). The choice is in :attr:`enumerated_sites` and logged once
            (logger ``"numpyro_reinmax"``, level INFO). ``None`` (default): every discrete site is
            sampled.
        max_configurations: the budget of ``enumerate="auto"`` (default 4096).
        dependencies: ``None`` (default): the discrete sites are drawn independently (mean
            field). ``"model"``: a structured guide, each site drawn in the model's order given the
            draws of the sampled discrete sites it depends on in the posterior
            (``numpyro.infer.inspect.get_dependencies``; upstream sites in a plate the site is
            not in are left out, logged at INFO). Or a dict ``{site: [parent sites]}``. The
            parents are in :attr:`parents`. A site's logits are a table over its parents' joint
            configurations (at most :data:`~reinmax_core.dependencies.TABLE_CONFIGURATIONS`;
            per plate element for plated sites; parameter ``f"{prefix}_{site}_logits"``), else
            an additive layer of their one-hots (``f"{prefix}_{site}_weights"`` added to the
            logits), added to the encoder's output for amortised sites. Which estimators are
            unbiased: under :class:`~numpyro_reinmax.infer.TraceLocalEnum_ELBO`, which draws
            each site's guide descendants again when it moves, straight-through and ReinMax at
            temperature 1 give unbiased gradients for every site's logits (tested against exact
            enumeration; not where a sampled site shares a factor with a site left to
            enumeration, a known bias of the local ELBO described in its guide), and ``"auto"``
            picks straight-through. Under the other ELBOs the
            gradient passes through the children's logits pathwise, where every
            straight-through estimator is biased (ReinMax to second order);
            ``"score_function"`` is unbiased everywhere. Sites inside ``scan`` cannot have
            guide parents.
        prefix, create_plates: as for every NumPyro autoguide.

    ``sample_posterior``, ``median`` (modes for discrete sites) and ``quantiles`` (continuous
    sites only) work as for NumPyro's autoguides; ``Predictive(model, guide=guide, params=...)``
    too. The logits start at 0 (uniform); to start elsewhere, pass
    ``init_params={f"{prefix}_{site}_logits": logits}`` to ``SVI.init`` or ``SVI.run``.
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
        prefix: str = "auto",
        create_plates: Callable | None = None,
    ) -> None:
        super().__init__(model, prefix=prefix, create_plates=create_plates)
        if not (enumerate is None or enumerate == "auto" or isinstance(enumerate, list | tuple)):
            raise ValueError(
                f'enumerate must be None, "auto" or a list of site names, got {enumerate!r}.'
            )
        self._enumerate = enumerate
        self._max_configurations = check_max_configurations(max_configurations)
        self.enumerated_sites: list[str] = []
        self.estimator = check_estimator(estimator, allow_auto=True)
        self.temperature = check_temperature(temperature)
        self._encoders = encoders
        self._dependencies = check_dependencies(dependencies)
        self.parents: dict[str, tuple[str, ...]] = {}
        self._feeders: frozenset = frozenset()
        self._continuous_guide = continuous_guide
        self._continuous = None
        self._continuous_first = False
        self._discrete: dict = {}
        self._plates: dict = {}
        self._checked_structures: set = set()

    def _encoder(self, name: str) -> Callable | None:
        if isinstance(self._encoders, dict):
            return self._encoders.get(name)
        return self._encoders

    def _check_structure(self, args: tuple, kwargs: dict) -> None:
        """Raise if the model's discrete sites for these arguments differ from the prototype's:
        NumPyro's SVI keeps one fixed set of parameters (and jit one fixed structure). Traced once
        per structure of the arguments (:func:`structure_key`), at trace time under jit."""
        key = structure_key(args, kwargs)
        if key in self._checked_structures:
            return
        with handlers.block():
            trace = handlers.trace(handlers.seed(self.model, jax.random.PRNGKey(0))).get_trace(
                *args, **kwargs
            )
        names = {
            name
            for name, site in trace.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and site["fn"].support.is_discrete
        }
        known = set(self._discrete) | set(self.enumerated_sites)
        if names != known:
            raise ValueError(
                "the model's discrete sites depend on its arguments: AutoReinMax was built from a "
                f"call with {len(known)} of them, and this call has {len(names)} (new: "
                f"{sorted(names - known)[:5]}, missing: {sorted(known - names)[:5]}). NumPyro's "
                "SVI keeps one fixed set of parameters and jit one fixed structure: pad the data "
                "to a common shape and mask the padding (numpyro.handlers.mask), or build one "
                "guide per structure."
            )
        self._checked_structures.add(key)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        # NumPyro's own set-up (initialize_model) refuses discrete sites: trace the model directly.
        key = numpyro.prng_key()
        key = jax.random.PRNGKey(0) if key is None else key
        with handlers.block():
            self.prototype_trace = handlers.trace(handlers.seed(self.model, key)).get_trace(
                *args, **kwargs
            )
        continuous = []
        for name, site in self.prototype_trace.items():
            if site["type"] == "plate":
                self._prototype_frame_full_sizes[name] = site["args"][0]
            if site["type"] != "sample" or site["is_observed"]:
                continue
            for frame in site["cond_indep_stack"]:
                self._prototype_frames[frame.name] = frame
                # a plate inside scan's body is not recorded as a site: its size is the frame's
                self._prototype_frame_full_sizes.setdefault(frame.name, frame.size)
            if not site["fn"].support.is_discrete:
                continuous.append(name)
            elif support_kind(site["fn"].support) is None:
                kind = type(unwrap(site["fn"])).__name__
                raise ValueError(
                    f"site {name!r} is discrete with support {site['fn'].support} ({kind}): "
                    "AutoReinMax covers sites with a finite support of categories (Categorical "
                    "and Binomial integers 0..K-1, one-hot, Bernoulli). Give the site a finite "
                    "support (e.g. truncate it to a Categorical), or hide it from the guide with "
                    "handlers.block and sample it with a guide of your own."
                )
            else:
                self._discrete[name] = site
        self.enumerated_sites = self._choose_enumerated(key, args, kwargs)
        discrete = list(self._discrete)
        for name in self.enumerated_sites:
            del self._discrete[name]
        self._add_parents(args, kwargs)
        if continuous:
            self._continuous = self._companion(discrete, args, kwargs)
            order = list(self.prototype_trace)
            first_discrete = min((order.index(n) for n in self._discrete), default=math.inf)
            self._continuous_first = order.index(continuous[0]) < first_discrete

    def _add_parents(self, args: tuple, kwargs: dict) -> None:
        """Each sampled site's guide parents (:func:`~reinmax_core.dependencies.guide_parents`)."""

        def posterior() -> None:
            try:
                with handlers.block():
                    model = handlers.seed(self.model, jax.random.PRNGKey(0))
                    found = get_dependencies(model, model_args=args, model_kwargs=kwargs)
            except Exception as error:
                raise ValueError(
                    'AutoReinMax(dependencies="model") could not read the model\'s dependencies '
                    f"(numpyro.infer.inspect.get_dependencies failed: {error}). Pass them as a "
                    "dict {site: [parent sites]} instead."
                ) from error
            return found["posterior_dependencies"]

        plates = {
            name: frozenset(frame.name for frame in site["cond_indep_stack"])
            for name, site in self._discrete.items()
        }
        self.parents, dropped = guide_parents(
            self._dependencies, list(self._discrete), plates, posterior
        )
        if dropped:
            logger.info(
                "AutoReinMax: leaving out dependencies on sites in plates their child is not in "
                "(site, upstream): %s",
                dropped,
            )
        for name, given in self.parents.items():
            for which in (name, *given) if given else ():
                fn = self._discrete[which]["fn"]
                if fn.event_dim > (support_kind(fn.support) == "one_hot"):
                    raise ValueError(structured_event_dims(which, name, given))
        self._feeders = feeds_guide(self.parents)

    def _parent_categories(self, name: str) -> list[int]:
        return [
            categories(self._discrete[p]["fn"], support_kind(self._discrete[p]["fn"].support))
            for p in self.parents.get(name, ())
        ]

    def _companion(self, discrete: list[str], args: tuple, kwargs: dict) -> AutoGuide | None:
        """The continuous guide, on the model with the discrete sites hidden. Its set-up
        (NumPyro's ``initialize_model``) runs that model with the discrete sites drawn from their
        prior, and fails where such a draw makes an observation impossible (an annotation model
        whose spammer flag and true class rule an annotation out): it is then set up again with
        the observations hidden as well, which the continuous sites' initial values do not need."""

        def build(hidden: list[str]) -> AutoGuide:
            companion = self._continuous_guide(
                handlers.block(self.model, hide=hidden),
                prefix=self.prefix,
                create_plates=lambda *a, **k: list(self._plates.values()),
            )
            if getattr(companion, "prototype_trace", False) is None:  # a NumPyro autoguide
                companion._setup_prototype(*args, **kwargs)
            return companion

        try:
            return build(discrete)
        except RuntimeError as error:
            if "Cannot find valid initial parameters" not in str(error):
                raise
        observed = [n for n, s in self.prototype_trace.items() if s.get("is_observed")]
        logger.info(
            "AutoReinMax: the continuous guide's initialisation found no valid start with the "
            "discrete sites drawn from their prior; set up again without the observations %s",
            observed,
        )
        return build(discrete + observed)

    def _logits(
        self, name: str, site: dict, parent_one_hots: list, *args: Any, **kwargs: Any
    ) -> Array:
        """The site's logits: its own parameter (a table over its parents' configurations when
        it has few), or its encoder's output, plus an additive layer of its parents' one-hots
        where it has parents and no table."""
        encoder = self._encoder(name)
        shape = list(jnp.shape(site["value"]))
        event_dim = site["fn"].event_dim
        for frame in site["cond_indep_stack"]:
            shape[frame.dim - event_dim] = self._prototype_frame_full_sizes[frame.name]
        kind = support_kind(site["fn"].support)
        if kind == "categorical":  # integer values: logits get a category axis
            shape.append(categories(site["fn"], kind))
            event_dim += 1
        cell_dims = 0 if kind == "bernoulli" else 1
        at = len(shape) - cell_dims  # parent axes go before the categories
        parent_categories = self._parent_categories(name)
        table = uses_table(parent_categories, encoder is not None)  # the parameter's shape
        if encoder is not None:
            logits = encoder(*args, **kwargs)
        else:
            own = shape[:at] + parent_categories + shape[at:] if table else shape
            init = jnp.zeros(own, jnp.result_type(float))
            event_dim_of_own = event_dim + (len(parent_categories) if table else 0)
            logits = numpyro.param(f"{self.prefix}_{name}_logits", init, event_dim=event_dim_of_own)

        def weights() -> list[Array]:
            init = jnp.zeros(shape[:at] + [sum(parent_categories)] + shape[at:])
            return numpyro.param(f"{self.prefix}_{name}_weights", init, event_dim=event_dim + 1)

        return self._conditioned(name, logits, parent_one_hots, cell_dims, weights)

    def _conditioned(
        self, name: str, logits: Array, parent_one_hots: list, cell_dims: int, weights: list
    ) -> Array:
        """``logits`` given the parents' one-hots: the table's row at their configuration, or
        plus the additive layer ``weights()`` of them (its parameter), or as they are."""
        if uses_table(self._parent_categories(name), self._encoder(name) is not None):
            return table_logits(logits, parent_one_hots, cell_dims, jnp.einsum)
        if parent_one_hots:
            return additive_logits(logits, weights(), parent_one_hots, cell_dims)
        return logits

    def _site_distribution(self, site: dict, logits: Array) -> Distribution:
        kind = support_kind(site["fn"].support)
        estimator = resolve_estimator(self.estimator)
        fn = site_distribution(kind, estimator, self.temperature, logits=logits)
        extra_event_dims = site["fn"].event_dim - fn.event_dim
        return fn.to_event(extra_event_dims) if extra_event_dims else fn

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
            self._checked_structures.add(structure_key(args, kwargs))
        self._check_structure(args, kwargs)
        self._plates = self._create_plates(*args, **kwargs)
        result = {}
        if self._continuous is not None and self._continuous_first:
            result.update(self._continuous(*args, **kwargs))
        locally = is_scored_locally()
        one_hots = {}
        for name, site in self._discrete.items():
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    stack.enter_context(self._plates[frame.name])
                parents = [one_hots[p] for p in self.parents.get(name, ())]
                if locally:  # the ELBO moves each site's guide descendants with it instead
                    parents = [jax.lax.stop_gradient(one_hot) for one_hot in parents]
                logits = self._logits(name, site, parents, *args, **kwargs)
                infer = {GUIDE_PARENTS: self.parents[name]} if self.parents.get(name) else {}
                recorded = RecordedOneHot()
                with recorded:
                    result[name] = numpyro.sample(
                        name, self._site_distribution(site, logits), infer=infer
                    )
            if name in self._feeders:
                kind = support_kind(site["fn"].support)
                k = categories(site["fn"], kind)
                one_hots[name] = drawn_one_hot(kind, result[name], k, recorded.one_hot)
        if self._continuous is not None and not self._continuous_first:
            result.update(self._continuous(*args, **kwargs))
        return result

    def sample_posterior(
        self,
        rng_key: Array,
        params: dict,
        *args: Any,
        sample_shape: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> dict:
        def draw(key: Array) -> dict:
            return handlers.substitute(handlers.seed(self, key), data=params)(*args, **kwargs)

        if not sample_shape:
            return draw(rng_key)
        keys = jax.random.split(rng_key, math.prod(sample_shape))
        samples = jax.vmap(draw)(keys)
        return jax.tree.map(lambda x: x.reshape(tuple(sample_shape) + x.shape[1:]), samples)

    def median(self, params: dict) -> dict:
        """Modes of the discrete sites (one-hot of the largest logit; 1 where p > 1/2) and the
        companion's medians."""
        medians = {} if self._continuous is None else self._continuous.median(params)
        one_hots = {}
        for name, site in self._discrete.items():
            if self._encoder(name) is not None:
                raise NotImplementedError(
                    f"site {name!r} is amortised: its mode depends on the model's arguments; use "
                    "sample_posterior(key, params, *args) instead."
                )
            kind = support_kind(site["fn"].support)
            cell_dims = 0 if kind == "bernoulli" else 1
            parents = [one_hots[p] for p in self.parents.get(name, ())]
            logits = self._conditioned(
                name,
                params[f"{self.prefix}_{name}_logits"],
                parents,
                cell_dims,
                lambda name=name: params[f"{self.prefix}_{name}_weights"],
            )
            fn = unwrap(self._site_distribution(site, logits))
            if kind == "one_hot":
                k = fn.event_shape[-1]
                medians[name] = jax.nn.one_hot(jnp.argmax(fn.logits, -1), k, dtype=fn.logits.dtype)
            elif kind == "categorical":
                medians[name] = jnp.argmax(fn.logits, -1)
            else:
                medians[name] = (fn.logits > 0).astype(jnp.result_type(float))
            if name in self._feeders:
                k = categories(site["fn"], kind)
                one_hots[name] = drawn_one_hot(kind, medians[name], k, None)
        return medians

    def quantiles(self, params: dict, quantiles: ArrayLike) -> dict:
        """The companion's quantiles; discrete sites have none."""
        return {} if self._continuous is None else self._continuous.quantiles(params, quantiles)

    def _choose_enumerated(self, key: Array, args: tuple, kwargs: dict) -> list[str]:
        if self._enumerate is None:
            return []
        if self._enumerate != "auto":
            unknown = sorted(set(self._enumerate) - set(self._discrete))
            if unknown:
                raise ValueError(
                    f"enumerate names {unknown}, which are not discrete latent sites of the model "
                    f"(those are {sorted(self._discrete)})."
                )
            chosen = [name for name in self._discrete if name in self._enumerate]
        else:
            candidates = {n: support_kind(s["fn"].support) for n, s in self._discrete.items()}
            nesting = max(
                (
                    -frame.dim
                    for site in self.prototype_trace.values()
                    if site["type"] == "sample"
                    for frame in site["cond_indep_stack"]
                ),
                default=0,
            )
            model = handlers.seed(self.model, key)
            chosen = choose_enumerated(
                model, args, kwargs, candidates, self._max_configurations, nesting
            )
        logger.info(
            "AutoReinMax: summing out %s exactly (enumeration); sampling %s with estimator %r",
            chosen,
            [n for n in self._discrete if n not in chosen],
            self.estimator,
        )
        return chosen
