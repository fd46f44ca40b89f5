r"""``TraceLocalEnum_ELBO``: every factor of the model gets the gradient of its multilinear
extension in the sampled discrete values, one variable at a time (Pyro).

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
every factor. With a structured guide (``AutoReinMax(dependencies=...)``: a site's logits
depend on the draws of earlier guide sites, recorded in its ``infer``), moving a site alone would
leave its guide descendants at draws made for its old value; so the guide is run again along the
perturbation dimension (:class:`_Redraw`), each descendant drawn again given the moved value with
the Gumbel noise that reproduces its draw, and every factor and guide term is linearised in its
parents' guide ancestors too. A site's gradient is then the model and guide with it at each
category and its descendants following, independent of its own draw: straight-through at
temperature 1 is again unbiased for every site, and ReinMax too.

Discrete model sites that the guide does not sample are summed out exactly, as
``TraceEnum_ELBO`` does, so one model mixes exact enumeration with ReinMax.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Hashable, Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions.score_parts import ScoreParts
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceEnum_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.ops.provenance import ProvenanceTensor, get_provenance
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import Tensor
from torch.distributions import Distribution

from reinmax_core.auto_estimator import scored_locally
from reinmax_core.dependencies import GUIDE_PARENTS, guide_ancestors, with_ancestors
from reinmax_core.messages import (
    NO_MAX_CONFIGURATIONS,
    infinite_loss,
    not_reparameterized,
    sampled_next_to_summed_out,
    unguided_event_dims,
)
from reinmax_core.options import check_count
from reinmax_core.perturbation import AT_DRAW, SiteVariables, SlotPlan, plan_slots
from reinmax_core.sites import check_same_plates

from ..categorical import _CategoricalReparameterized
from ..families import categories, support_kind, unwrap
from ..linearisation import category_log_probs, linearise, on_elements, site_values
from ..masking import select
from ..reparameterized import Reparameterized
from .conditional import ONE_HOT
from .scoring import scoring_priors_exactly
from .site_context import NameFailingSite, name_site
from .structure import structure_key

__all__ = ["TraceLocalEnum_ELBO"]


class LocalDraw(NamedTuple):
    """A guide site that the ELBO linearises: its kind, its one-hot view (differentiable: the
    estimator's backward reaches the guide through it), the drawn categories, the guide's
    normalised log-probabilities, its event axes beyond the category's, its number of
    categories, and its vectorized plates."""

    kind: str
    one_hot: Tensor
    index: Tensor
    log_q: Tensor
    event_dims: int
    categories: int
    plates: frozenset

    def batch_shape(self) -> torch.Size:
        return self.index.shape[: self.index.dim() - self.event_dims]

    def variables(self) -> SiteVariables:
        count = math.prod(self.index.shape[self.index.dim() - self.event_dims :])
        return SiteVariables(count=count, categories=self.categories)


def _plates(site: dict) -> frozenset:
    return frozenset(frame.name for frame in site["cond_indep_stack"] if frame.vectorized)


class _DrawThroughOneHot(Messenger):
    """Draw the guide's integer sites (this package's categorical classes) through their one-hot
    estimator: the trace holds the index, :attr:`one_hots` the differentiable one-hot draw."""

    def __init__(self) -> None:
        super().__init__()
        self.one_hots: dict[str, Tensor] = {}

    def _pyro_sample(self, msg: dict) -> None:
        base = unwrap(msg["fn"])
        if msg["is_observed"] or msg["done"] or not isinstance(base, _CategoricalReparameterized):
            return
        one_hot = base.one_hot_rsample(msg["fn"].shape())
        self.one_hots[msg["name"]] = one_hot
        msg["value"] = one_hot.argmax(-1)
        msg["infer"] = {**msg["infer"], ONE_HOT: one_hot}  # for a structured guide's children
        msg["done"] = True


def _plate_sizes(site: dict) -> dict[str, int]:
    """Each vectorized plate's full size (a subsampled plate replays the guide's minibatch)."""
    return {
        frame.name: frame.full_size or frame.size
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    }


def _local_draw(site: dict, one_hots: dict) -> LocalDraw | None:
    """The site as a :class:`LocalDraw` if the ELBO linearises it (a guide site drawn by one of
    this package's estimator classes), else None."""
    if site["type"] != "sample" or site["is_observed"]:
        return None
    fn = site["fn"]
    if not isinstance(unwrap(fn), Reparameterized):
        return None
    kind = support_kind(fn.support)
    value = site["value"]
    if kind == "categorical":
        one_hot = one_hots[site["name"]]
        event_dims = fn.event_dim
        index = value
    elif kind == "bernoulli":
        one_hot = torch.stack([1 - value, value], -1)
        event_dims = fn.event_dim
        index = value.detach().long()
    else:
        one_hot = value
        event_dims = fn.event_dim - 1
        index = value.detach().argmax(-1)
    log_q = unwrap(fn)._one_hot_logits().log_softmax(-1)
    log_q = log_q.expand(index.shape + log_q.shape[-1:])
    return LocalDraw(kind, one_hot, index, log_q, event_dims, one_hot.shape[-1], _plates(site))


@contextlib.contextmanager
def _explaining_settings() -> Iterator[None]:
    """An error raised while the model runs at every setting of its sampled sites says so: a
    parameter invalid at some category fails here even where the draw never takes it."""
    try:
        yield
    except (ValueError, RuntimeError) as error:
        name_site(
            error,
            "(TraceLocalEnum_ELBO evaluates every factor at each category of each of its sampled "
            "parents, stacked on the leftmost batch dim: a parameter or value computed from a "
            "category where it is invalid fails there even if the draw never takes it; the "
            "model must be defined at every category of its sites)",
        )
        raise


def _squeezed(shape: tuple[int, ...]) -> tuple:
    """A batch shape without its leading 1s."""
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


class _Perturb(Messenger):
    """Run the model with every linearised site batched along the perturbation dimension (values
    from :meth:`value`), the other guide sites replayed, and the discrete model sites that the
    guide does not sample marked for parallel enumeration (summed out). With ``tag``, the
    linearised sites' values carry their names as provenance instead (one element)."""

    def __init__(
        self,
        guide_trace: Trace,
        draws: dict,
        plan: SlotPlan | None,
        dim: int,
        redrawn: dict | None = None,
    ) -> None:
        super().__init__()
        self.guide_trace, self.draws, self.plan, self.dim = guide_trace, draws, plan, dim
        self.redrawn = redrawn or {}

    def _pyro_sample(self, msg: dict) -> None:
        # values are set without ``done``: the enumeration handler must still see every site
        # (pyro.markov's scopes name them all), and leaves a site with a value as it is
        name = msg["name"]
        if msg["is_observed"]:
            return
        if name in self.draws:
            check_same_plates(name, _plate_sizes(self.guide_trace.nodes[name]), _plate_sizes(msg))
            msg["value"] = self.value(name, msg["fn"])
            msg["infer"] = {**msg["infer"], "enumerate": None}
            return
        if name not in self.guide_trace:
            if site_is_subsample(msg):
                return  # the model draws its own minibatch
            fn = msg["fn"]
            if fn.support.is_discrete:
                one_hot = support_kind(fn.support) == "one_hot"
                if fn.event_dim > one_hot:
                    raise ValueError(unguided_event_dims(name, fn.event_shape, "pyro_reinmax"))
                if not fn.has_enumerate_support:
                    raise ValueError(
                        f"model site {name!r} is discrete, the guide does not sample it, and it "
                        f"cannot be enumerated ({type(unwrap(fn)).__name__}): sample it in the "
                        "guide (e.g. with pyro_reinmax.infer.AutoReinMax) or write it with a "
                        "finite support (Categorical, Bernoulli, one-hot)."
                    )
                msg["infer"].setdefault("enumerate", "parallel")
            return
        guide_site = self.guide_trace.nodes[name]
        msg["value"] = guide_site["value"]
        msg["infer"] = guide_site["infer"]

    def value(self, name: str, fn: Distribution) -> Tensor:
        """The model site's values: the guide's draw, moved at every element of the perturbation
        dimension, in the model's representation (one-hot, 0/1 or integer)."""
        draw = self.draws[name]
        kind = support_kind(fn.support)
        event_shape = tuple(draw.index.shape[draw.index.dim() - draw.event_dims :])
        _check_same_variables(name, draw.categories, event_shape, fn)
        model_batch = fn.batch_shape[max(0, len(fn.batch_shape) + self.dim + 1) :]
        if _squeezed(model_batch) != _squeezed(draw.batch_shape()):
            raise ValueError(
                f"site {name!r}: the guide's value has batch shape {tuple(draw.batch_shape())}, "
                f"the model's distribution {tuple(model_batch)}: sample the guide site inside "
                "the same plates as the model's (with the same sizes)."
            )
        if self.plan is None:  # the draw itself, tagged with the site's name
            index = draw.index.reshape(
                (1,) * (-self.dim - len(draw.batch_shape())) + draw.index.shape
            )
            index = ProvenanceTensor(index, frozenset({name}))
        elif name in self.redrawn:
            index = self.redrawn[name].index
        else:
            settings = torch.tensor(self.plan.settings(name), device=draw.index.device)
            covers = self.plan.covers(name)
            index = site_values(draw.index, draw.event_dims, settings, self.dim, covers)
        if kind == "categorical":
            return index
        dtype = draw.one_hot.dtype
        return F.one_hot(index, draw.categories).to(dtype) if kind == "one_hot" else index.to(dtype)


class _Structure:
    """A model structure's factor parents and slots, with the element indices derived from them
    (cached per device). With a structured guide, a factor's parents include their guide
    ancestors, and ``guide_terms`` holds the ancestors of each guide site that has some."""

    def __init__(self, parents: dict, plan: SlotPlan, guide_terms: dict) -> None:
        self.parents, self.plan, self.guide_terms = parents, plan, guide_terms
        self._cache: dict = {}

    def _tensor(self, key: Hashable, values: list[int], device: torch.device) -> Tensor:
        if (key, device) not in self._cache:
            self._cache[key, device] = torch.tensor(values, dtype=torch.long, device=device)
        return self._cache[key, device]

    def elements(self, site: str, device: torch.device) -> Tensor:
        """The elements that set ``site``'s variables, variable-major."""
        flat = [e for variable in self.plan.elements[site] for e in variable]
        return self._tensor(("elements", site), flat, device)

    def elements_of(self, sites: tuple, device: torch.device) -> Tensor:
        """The elements that set any of ``sites``' variables, site after site."""
        flat = [e for site in sites for variable in self.plan.elements[site] for e in variable]
        return self._tensor(("elements of", sites), flat, device)

    def first_elements(self, site: str, device: torch.device) -> Tensor:
        """The elements that set ``site``'s first variable."""
        return self._tensor(("first", site), list(self.plan.elements[site][0]), device)

    def unset(self, parents: tuple, device: torch.device) -> Tensor | None:
        """The elements that set none of ``parents`` (None if every element sets one)."""
        setting = {e for p in parents for variable in self.plan.elements[p] for e in variable}
        rest = [e for e in range(self.plan.size) if e not in setting]
        return self._tensor(("unset", parents), rest, device) if rest else None


class _SameSitesAsGuide(Messenger):
    """Refuses a model site whose guide site lies in a plate of another size, or is discrete
    with other variables (another number of categories, or other event dims), before the model
    uses the guide's value."""

    def __init__(self, guide_trace: Trace) -> None:
        super().__init__()
        self.guide_trace = guide_trace

    def _pyro_sample(self, msg: dict) -> None:
        name = msg["name"]
        if msg["is_observed"] or site_is_subsample(msg) or name not in self.guide_trace.nodes:
            return
        check_same_plates(name, _plate_sizes(self.guide_trace.nodes[name]), _plate_sizes(msg))
        guide_fn = self.guide_trace.nodes[name]["fn"]
        guide_kind = support_kind(guide_fn.support)
        if guide_kind is None or not msg["fn"].support.is_discrete:
            return
        one_hot = guide_kind == "one_hot"
        event_shape = tuple(guide_fn.event_shape)[: guide_fn.event_dim - one_hot]
        _check_same_variables(name, categories(guide_fn, guide_kind), event_shape, msg["fn"])


def _check_same_variables(
    name: str, guide_categories: int, guide_event_shape: tuple, fn: Distribution
) -> None:
    """A ``ValueError`` naming the site unless the model's ``fn`` has variables of the guide's
    kind: ``guide_categories`` categories each, in the event shape ``guide_event_shape`` (without
    a one-hot's category axis)."""
    kind = support_kind(fn.support)
    event_dims = fn.event_dim - (kind == "one_hot")
    if (
        kind is None
        or event_dims != len(guide_event_shape)
        or categories(fn, kind) != guide_categories
    ):
        raise ValueError(
            f"site {name!r}: the guide draws {guide_categories} categories per variable with "
            f"event shape {guide_event_shape}, but the model's site is "
            f"{type(unwrap(fn)).__name__} with support {fn.support} and event shape "
            f"{tuple(fn.event_shape)}: give the guide site the model's support and shape "
            "(AutoReinMax does)."
        )


def _warn_if_infinite(loss: float) -> float:
    if loss == math.inf:
        warnings.warn(infinite_loss("pyro_reinmax"), RuntimeWarning, stacklevel=3)
    return loss


class TraceLocalEnum_ELBO(TraceEnum_ELBO):
    r"""ELBO whose model factors are scored by their multilinear extension in the guide's sampled
    discrete values, one variable at a time (see the module docstring).

    Use it like ``TraceMeanField_ELBO``, with a guide that samples the discrete sites with this
    package's estimator classes (``AutoReinMax``; one-hot ``ReinMaxOneHotCategorical``, 0/1
    ``ReinMaxBernoulli``, integer ``ReinMaxCategorical``, or another estimator's), and the model
    as written for ``TraceEnum_ELBO``: integer ``dist.Categorical`` sites with indexing
    (``locs[z]``, ``Vindex``), ``dist.Bernoulli``, one-hot sites, ``pyro.plate``,
    subsampling, ``pyro.markov``, ``poutine.mask`` and ``poutine.scale``. Discrete model sites the
    guide does not sample are summed out exactly (marked for parallel enumeration).

    Each step runs the model once, every linearised site batched along one perturbation
    dimension of :math:`1 + \sum_s (K_s - 1)` elements (slots: sites that share no factor share
    a slot). Which factor depends on which site is read once per structure of the model's
    arguments, by provenance tracking, and checked at every step. A factor that depends on
    several instances of a plated site (it lies outside the site's plate) is refused with an
    error: put it inside the plate, or give the site's plate dims to its event (``to_event``)
    so each instance becomes a variable of its own.

    Args:
        analytic_kl: score each sampled site's own prior factor and its guide term by the exact
            expectation under the guide, :math:`\sum_k q_k (\log q_k - \log p(k \mid \ldots))`
            (its parents linearised in turn), as ``TraceMeanField_ELBO`` does. With ``False``,
            the loss on a given sample equals ``Trace_ELBO``'s. Default ``True``.
        max_plate_nesting, num_particles, vectorize_particles: as ``TraceEnum_ELBO``; other
            keyword arguments go to it too.

    After a step, :attr:`local_sites` lists the linearised sites and :attr:`perturbation` (a
    :class:`~reinmax_core.perturbation.SlotPlan`) their slots and the dimension's size.
    """

    def __init__(self, *, analytic_kl: bool = True, **kwargs: Any) -> None:
        if "max_configurations" in kwargs:
            raise TypeError(NO_MAX_CONFIGURATIONS)
        if not isinstance(analytic_kl, bool):
            raise TypeError(f"analytic_kl must be True or False, got {analytic_kl!r}.")
        kwargs.setdefault("strict_enumeration_warning", False)
        check_count("num_particles", kwargs.get("num_particles", 1))
        super().__init__(**kwargs)
        self.analytic_kl = analytic_kl
        self.local_sites: list[str] = []
        self.perturbation: SlotPlan | None = None
        self._structures: dict = {}
        self._warned_biased = False  # the known-bias warning, once per ELBO

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """As ``TraceEnum_ELBO.loss``; warns (:func:`~reinmax_core.messages.infinite_loss`) where
        the loss is ``+inf``."""
        return _warn_if_infinite(super().loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """As ``TraceEnum_ELBO.loss_and_grads``; warns where the loss is ``+inf``."""
        return _warn_if_infinite(super().loss_and_grads(model, guide, *args, **kwargs))

    def _get_traces(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> Iterator[tuple[Trace, Trace]]:
        if isinstance(poutine.unwrap(guide), Messenger):
            raise NotImplementedError("TraceLocalEnum_ELBO does not support GuideMessenger")
        model, guide = NameFailingSite("model")(model), NameFailingSite("guide")(guide)
        if self.max_plate_nesting == float("inf"):
            # Pyro's guess runs the model on the guide's values: check them first, so that a
            # guide of other supports fails here with its name, not inside the model's indexing
            guide_trace = poutine.block(poutine.trace(guide).get_trace)(*args, **kwargs)
            checked = _SameSitesAsGuide(guide_trace)(model)
            self._guess_max_plate_nesting(checked, guide, args, kwargs)
        if self.vectorize_particles:
            guide = self._vectorized_num_particles(guide)
            model = self._vectorized_num_particles(model)
        for _ in range(1 if self.vectorize_particles else self.num_particles):
            yield self._get_trace(model, guide, args, kwargs)

    def _get_trace(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[Trace, Trace]:
        with scoring_priors_exactly():
            return self._get_trace_scored_exactly(model, guide, args, kwargs)

    @property
    def _dim(self) -> int:
        """The perturbation dimension: left of every plate; enumeration starts left of it."""
        return -1 - self.max_plate_nesting

    def _get_trace_scored_exactly(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[Trace, Trace]:
        drawing = _DrawThroughOneHot()
        with scored_locally():
            guide_trace = poutine.trace(drawing(guide), graph_type="flat").get_trace(
                *args, **kwargs
            )
        draws = {}
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and site["infer"].get("enumerate"):
                raise NotImplementedError(
                    f"guide site {name!r} is marked for enumeration: TraceLocalEnum_ELBO samples "
                    "the guide's discrete sites. Sum it out in the model instead (leave it out of "
                    "the guide), or use pyro.infer.TraceEnum_ELBO."
                )
            draw = _local_draw(site, drawing.one_hots)
            if draw is not None:
                draws[name] = draw
            elif _not_reparameterized(site):
                kind = type(unwrap(site["fn"])).__name__
                raise ValueError(not_reparameterized(name, kind, "pyro_reinmax"))
        self.local_sites = list(draws)
        recorded = {n: guide_trace.nodes[n]["infer"].get(GUIDE_PARENTS, ()) for n in draws}
        ancestors = guide_ancestors(recorded, list(draws))
        views = _views(draws, self._dim)
        for refresh in (False, True):
            structure = self._plan(model, guide_trace, draws, ancestors, args, kwargs, refresh)
            redrawn = {}
            if structure.guide_terms:
                redrawn = self._redraw(guide, guide_trace, draws, structure, args, kwargs)
            with _explaining_settings():
                model_trace = self._model_trace(
                    model, guide_trace, draws, structure.plan, redrawn, args, kwargs
                )
            model_trace.compute_log_prob()
            stale = self._linearise(model_trace, draws, structure, redrawn, views)
            if not stale:
                break
        else:
            raise RuntimeError(
                f"TraceLocalEnum_ELBO: factor {stale!r} changes with a sampled site that "
                "provenance tracking did not see it read (a value taken out of torch, e.g. "
                "with .item() or numpy?). Keep the discrete values in torch operations."
            )
        if not self._warned_biased:  # looked for until found: once per ELBO, not every step
            biased = _sampled_next_to_summed_out(model_trace, draws, structure)
            if biased:
                self._warned_biased = True
                warnings.warn(sampled_next_to_summed_out(biased), UserWarning, stacklevel=2)
        guide_trace = prune_subsample_sites(guide_trace)
        self._score_guide(guide_trace, draws, structure, redrawn, views)
        guide_trace.compute_score_parts()  # the other sites
        guide_trace.pack_tensors()
        model_trace.pack_tensors(guide_trace.plate_to_symbol)
        return model_trace, guide_trace

    def _plan(
        self,
        model: Callable,
        guide_trace: Trace,
        draws: dict,
        ancestors: dict,
        args: tuple,
        kwargs: dict,
        refresh: bool,
    ) -> _Structure:
        """Which linearised sites each factor depends on (with their guide ancestors), and the
        slots: read once per structure (the arguments' shapes, the draws' kinds and shapes and
        the guide's dependencies), again when ``refresh``."""
        key = (
            structure_key(args, kwargs, floats=True),
            self.max_plate_nesting,
            tuple((n, d.kind, tuple(d.index.shape), d.categories) for n, d in draws.items()),
            tuple(ancestors.items()),
        )
        if refresh or key not in self._structures:
            parents = self._factor_parents(model, guide_trace, draws, args, kwargs)
            parents = {
                factor: with_ancestors(found, ancestors, list(draws))
                for factor, found in parents.items()
            }
            guide_terms = {name: found for name, found in ancestors.items() if found}
            plan = plan_slots(
                {n: d.variables() for n, d in draws.items()},
                list(parents.values()) + list(guide_terms.values()),
            )
            self._structures[key] = _Structure(parents, plan, guide_terms)
        structure = self._structures[key]
        self.perturbation = structure.plan
        return structure

    def _factor_parents(
        self, model: Callable, guide_trace: Trace, draws: dict, args: tuple, kwargs: dict
    ) -> dict:
        """Every factor's linearised parents, by provenance tracking; a factor outside the plate
        of a parent is refused."""
        tag = _Perturb(guide_trace, draws, None, self._dim)
        enumerate_ = EnumMessenger(first_available_dim=self._dim - 1)
        with torch.no_grad():
            trace = poutine.trace(enumerate_(tag(model)), graph_type="flat").get_trace(
                *args, **kwargs
            )
        trace = prune_subsample_sites(trace)
        trace.compute_log_prob()
        parents = {}
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or "log_prob" not in site:
                continue
            found = [n for n in draws if n in get_provenance(site["log_prob"])]
            for parent in found:
                outside = draws[parent].plates - _plates(site)
                if outside:
                    raise ValueError(
                        f"factor {name!r} depends on site {parent!r} but lies outside its "
                        f"plate(s) {sorted(outside)}: it depends on several instances of "
                        f"{parent!r} at once, which one slot cannot perturb one at a time. Put "
                        f"{name!r} inside the plate, or declare the plate's dim an event dim of "
                        f"{parent!r} (.to_event) so that each instance is a variable of its own."
                    )
            parents[name] = tuple(found)
        return parents

    def _redraw(
        self,
        guide: Callable,
        guide_trace: Trace,
        draws: dict,
        structure: _Structure,
        args: tuple,
        kwargs: dict,
    ) -> dict:
        """The guide run again along the perturbation dimension: each site at its settings
        there, and every site with guide ancestors drawn again where they move, with the same
        noise (:class:`_Redraw`)."""
        redraw = _Redraw(guide_trace, draws, structure, self._dim)
        with scored_locally():
            poutine.block(redraw(guide))(*args, **kwargs)
        return redraw.redrawn

    def _model_trace(
        self,
        model: Callable,
        guide_trace: Trace,
        draws: dict,
        plan: SlotPlan | None,
        redrawn: dict,
        args: tuple,
        kwargs: dict,
    ) -> Trace:
        perturb = _Perturb(guide_trace, draws, plan, self._dim, redrawn)
        enumerate_ = EnumMessenger(first_available_dim=self._dim - 1)
        model_trace = poutine.trace(enumerate_(perturb(model)), graph_type="flat").get_trace(
            *args, **kwargs
        )
        return prune_subsample_sites(model_trace)

    def _linearise(
        self,
        model_trace: Trace,
        draws: dict,
        structure: _Structure,
        redrawn: dict,
        views: tuple[dict, dict],
    ) -> str | None:
        """Replace every factor by its linearisation; return the name of a factor that changes
        at an element that sets none of its known parents (dependencies went stale), else
        None."""
        dim = self._dim
        differences, drawn = views
        checks = []
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or "log_prob" not in site:
                continue
            own = name in draws and self.analytic_kl
            if own:
                log_q = redrawn[name].log_q if name in redrawn else draws[name].log_q
                _expect_under_guide(site, draws[name], log_q)
            if name in draws:
                site["value"] = draws[name].index
            log_prob, unscaled = site["log_prob"], site["unscaled_log_prob"]
            if log_prob.dim() < -dim or log_prob.shape[dim] == 1:
                continue  # no element changes it
            parents = structure.parents.get(name, ())
            if not parents:
                return name  # it changes with a site it was not known to read
            device = log_prob.device
            base = (structure.first_elements(parents[0], device), drawn[parents[0]])
            terms = _terms(structure, [p for p in parents if not (own and p == name)], differences)
            checks.append((name, parents, log_prob, base, structure.unset(parents, device)))
            site["log_prob"] = linearise(log_prob, dim, base, terms)
            site["unscaled_log_prob"] = (
                site["log_prob"] if unscaled is log_prob else linearise(unscaled, dim, base, terms)
            )
            site["log_prob_sum"] = site["log_prob"].sum()
        return _stale_factor(checks, dim)

    def _score_guide(
        self,
        guide_trace: Trace,
        draws: dict,
        structure: _Structure,
        redrawn: dict,
        views: tuple[dict, dict],
    ) -> None:
        r"""The guide terms of linearised sites: the negative entropy under ``analytic_kl``, else
        :math:`\log q` at the draw, linear in the one-hot draw (pathwise, no score function);
        a site with guide ancestors has its term linearised in them, as a model factor is."""
        dim = self._dim
        differences, drawn = views
        for name, draw in draws.items():
            site = guide_trace.nodes[name]
            log_q = redrawn[name].log_q if name in redrawn else draw.log_q
            if self.analytic_kl:
                probs = log_q.exp()
                term = (probs * torch.where(probs > 0, log_q, 0.0)).sum(-1)
            else:
                term = select(draw.one_hot, log_q)
            term = term.sum(tuple(range(-draw.event_dims, 0))) if draw.event_dims else term
            parents = structure.guide_terms.get(name, ())
            if parents:
                device = term.device
                base = (structure.first_elements(parents[0], device), drawn[parents[0]])
                terms = _terms(structure, parents, differences)
                term = linearise(term, dim, base, terms).reshape(draw.batch_shape())
            site["unscaled_log_prob"] = term
            site["log_prob"] = scale_and_mask(term, site["scale"], site["mask"])
            site["log_prob_sum"] = site["log_prob"].sum()
            site["score_parts"] = ScoreParts(
                log_prob=site["log_prob"], score_function=0, entropy_term=0
            )


def _expect_under_guide(site: dict, draw: LocalDraw, log_q: Tensor) -> None:
    r"""A linearised site's own prior factor as its expectation under the guide,
    :math:`\sum_k q_k \log p(k \mid \ldots)`, at every element of the perturbation dimension
    (the model's distribution there carries its parents' moves, ``log_q`` its guide
    ancestors')."""
    probs = log_q.exp()
    log_p = category_log_probs(site["fn"])
    term = (probs * torch.where(probs > 0, log_p, 0.0)).sum(-1)
    if draw.event_dims:
        term = term.sum(tuple(range(-draw.event_dims, 0)))
    site["unscaled_log_prob"] = term
    site["log_prob"] = scale_and_mask(term, site["scale"], site["mask"])


def _sampled_next_to_summed_out(model_trace: Trace, draws: dict, structure: _Structure) -> dict:
    """Factor name -> (its sampled parents, the summed-out sites it depends on), for the
    factors that have both (the local ELBO's known bias)."""
    enumerated = {
        name: site["infer"]["_enumerate_dim"]
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and "_enumerate_dim" in site["infer"] and name not in draws
    }
    found = {}
    for name, site in model_trace.nodes.items():
        sampled = structure.parents.get(name, ())
        if site["type"] != "sample" or "log_prob" not in site or not sampled:
            continue
        shape = site["log_prob"].shape
        summed = [n for n, d in enumerated.items() if len(shape) >= -d and shape[d] > 1]
        if summed:
            found[name] = (tuple(sampled), tuple(summed))
    return found


def _stale_factor(checks: list, dim: int) -> str | None:
    """The first factor whose log-density differs from its value at the sample at an element
    that sets none of its parents (one synchronisation for all factors); with validation on, a
    factor that is NaN at some setting of its parents is an error that names it."""
    validate = is_validation_enabled()
    flags = []
    for name, parents, log_prob, (elements, drawn), unset in checks:
        log_prob = log_prob.detach()
        if unset is not None:
            at_sample = torch.where(drawn, log_prob.index_select(dim, elements), 0.0)
            at_sample = at_sample.sum(dim, keepdim=True)
            other = log_prob.index_select(dim, unset)
            differs = (other != at_sample) & ~(other.isnan() & at_sample.isnan())
            flags.append(("stale", name, parents, differs.any()))
        if validate:
            flags.append(("nan", name, parents, log_prob.isnan().any()))
    if not flags:
        return None
    stacked = torch.stack([flag for *_, flag in flags])
    if not bool(stacked.any()):
        return None
    kind, name, parents, _ = flags[int(stacked.nonzero()[0, 0])]
    if kind == "nan":
        raise ValueError(
            f"TraceLocalEnum_ELBO: factor {name!r} is NaN at some setting of its sampled parents "
            f"{list(parents)} (its log-density is undefined for a category one of them can take: "
            "a parameter computed from that category out of its range?). Check the model at "
            "every category of those sites (or turn validation off to let the NaN through)."
        )
    return name


def _terms(structure: _Structure, parents: list, differences: dict) -> list:
    """The ``(elements, differences)`` of :func:`linearise` for these parents: one pair for all
    of them where their differences have one shape (one product instead of one per parent)."""
    if not parents:
        return []
    device = differences[parents[0]].device
    shapes = {differences[p].shape[1:] for p in parents}
    if len(parents) == 1 or len(shapes) > 1:
        return [(structure.elements(p, device), differences[p]) for p in parents]
    dim = -differences[parents[0]].dim()
    stacked = torch.cat([differences[p] for p in parents], dim)
    return [(structure.elements_of(tuple(parents), device), stacked)]


def _not_reparameterized(site: dict) -> bool:
    """A latent discrete guide site with no pathwise gradient (not a subsample site)."""
    if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
        return False
    fn = site["fn"]
    return fn.support.is_discrete and not fn.has_rsample


def _views(draws: dict, dim: int) -> tuple[dict, dict]:
    """Each draw's one-hot minus the same, detached, and its drawn categories, on axis ``dim``
    (:func:`~pyro_reinmax.linearisation.on_elements`)."""
    differences, drawn = {}, {}
    for name, draw in draws.items():
        differences[name] = on_elements(draw.one_hot - draw.one_hot.detach(), draw.event_dims, dim)
        first = F.one_hot(draw.index, draw.categories).bool()
        first = first.reshape(first.shape[: first.dim() - draw.event_dims - 1] + (-1,))
        drawn[name] = on_elements(first[..., : draw.categories], 0, dim)
    return differences, drawn


class Redrawn(NamedTuple):
    """A structured guide's site along the perturbation dimension: its categories and its
    normalised log-probabilities there."""

    index: Tensor
    log_q: Tensor


def _gumbels_given_argmax(log_q: Tensor, index: Tensor) -> Tensor:
    r"""Gumbel noise :math:`G` with :math:`\arg\max_k (\log q_k + G_k)` = ``index``, drawn
    from its distribution given that argmax (the largest perturbed value is a
    :math:`\mathrm{Gumbel}(0)` when :math:`\sum_k q_k = 1`; the others are Gumbels truncated
    below it). Categories of probability 0 get :math:`-\infty`."""
    log_q = log_q.detach()
    top = -torch.log(-torch.log(torch.rand(index.shape, dtype=log_q.dtype, device=log_q.device)))
    uniforms = torch.rand(log_q.shape, dtype=log_q.dtype, device=log_q.device)
    gumbels = log_q - torch.log(-torch.log(uniforms))
    others = -torch.logaddexp(-top.unsqueeze(-1), -gumbels)
    perturbed = torch.where(F.one_hot(index, log_q.shape[-1]).bool(), top.unsqueeze(-1), others)
    return torch.where(torch.isfinite(log_q), perturbed - log_q, -math.inf)


class _Redraw(Messenger):
    r"""Run a structured guide again along the perturbation dimension. A linearised site takes
    its element's setting where the element sets it; elsewhere it is drawn again from its
    conditional there, :math:`\arg\max_k (\log q_k(\cdot \mid \text{parents}) + G_k)`, with
    the noise :math:`G` that reproduces its draw (:func:`_gumbels_given_argmax`): unchanged where
    no ancestor moves, a draw from :math:`q(\cdot \mid \text{moved parents})` where one does.
    So the gradient a site gets from its element :math:`k` is the model and guide with the site
    at :math:`k` and its guide descendants drawn given :math:`k`, independent of its own draw
    (straight-through at temperature 1 is then unbiased). Other guide sites are replayed."""

    def __init__(self, guide_trace: Trace, draws: dict, structure: _Structure, dim: int) -> None:
        super().__init__()
        self.guide_trace, self.draws, self.structure, self.dim = guide_trace, draws, structure, dim
        self.noise = {
            name: _gumbels_given_argmax(draws[name].log_q, draws[name].index)
            for name in structure.guide_terms
        }
        self.redrawn: dict[str, Redrawn] = {}

    def _pyro_sample(self, msg: dict) -> None:
        name = msg["name"]
        if msg["is_observed"] or name not in self.guide_trace.nodes:
            return
        msg["done"] = True
        if name not in self.draws:
            msg["value"] = self.guide_trace.nodes[name]["value"]
            return
        draw = self.draws[name]
        plan = self.structure.plan
        settings = torch.tensor(plan.settings(name), device=draw.index.device)
        index = site_values(draw.index, draw.event_dims, settings, self.dim, plan.covers(name))
        log_q = unwrap(msg["fn"])._one_hot_logits().log_softmax(-1)
        if name in self.noise:
            unset = torch.full_like(draw.index, AT_DRAW)
            setting = site_values(unset, draw.event_dims, settings, self.dim, False)
            drawn_again = (log_q + self.noise[name]).argmax(-1)
            index = torch.where(setting != AT_DRAW, setting, drawn_again)
            self.redrawn[name] = Redrawn(index, log_q)
        dtype = draw.one_hot.dtype
        one_hot = F.one_hot(index, draw.categories).to(dtype)
        if draw.kind == "categorical":
            msg["value"] = index
            msg["infer"] = {**msg["infer"], ONE_HOT: one_hot}
        else:
            msg["value"] = one_hot if draw.kind == "one_hot" else index.to(dtype)
