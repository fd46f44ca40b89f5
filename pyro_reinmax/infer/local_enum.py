r"""``TraceLocalEnum_ELBO``: every factor of the model gets the gradient of its multilinear
extension in the sampled discrete values (Pyro).

Straight-through estimators (ReinMax included) differentiate the model's code at the sampled
one-hot corner. A factor that *selects parameters* with a one-hot (``Normal(z @ locs, 1)``,
``Bernoulli(probs=(z * phi).sum(-1))``, a transition row ``z_prev @ trans``, ``locs[z.argmax(-1)]``)
is then an arbitrary, often very non-linear, continuous extension of the model, and the guide
follows a useless or harmful gradient. This ELBO samples the guide's reparameterized discrete sites
as usual, but runs the model with those sites *enumerated in parallel* (the model's code unchanged,
as under ``TraceEnum_ELBO``), and contracts each factor along the enumeration dimensions of its
discrete parents with their sampled one-hot values:

.. math:: \log f(x \mid z_1, \dots, z_m) \;\to\;
    \sum_c \Big(\prod_i z_{i, c_i}\Big) \log f(x \mid c).

At the sample the loss is exactly ``Trace_ELBO``'s; the gradient in :math:`z_i` no longer depends
on :math:`z_i`, so with a guide that draws the sites independently, straight-through at
temperature 1 and ReinMax are unbiased for every factor. A factor costs one evaluation per
configuration of its *own* discrete parents: what parallel enumeration computes.

Discrete model sites that the guide does not sample are summed out exactly, as ``TraceEnum_ELBO``
does, so one model mixes exact enumeration (cheap sites) with ReinMax (the rest).
"""

from __future__ import annotations

import math
import warnings

import torch
from pyro import poutine
from pyro.distributions.score_parts import ScoreParts
from pyro.distributions.util import broadcast_shape, scale_and_mask
from pyro.infer import TraceEnum_ELBO
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from ..contraction import contract_dim, weights_on_dim
from ..families import support_kind, unwrap
from ..reparameterized import Reparameterized
from .scoring import scoring_priors_exactly
from .site_context import NameFailingSite

__all__ = ["TraceLocalEnum_ELBO"]

DEFAULT_MAX_CONFIGURATIONS = 4096


def _one_hot_view(kind: str, value: torch.Tensor) -> torch.Tensor:
    """The value of a one-hot (or 0/1) site as weights over its enumerated support."""
    return value if kind == "one_hot" else torch.stack([1 - value, value], -1)


def _is_local_candidate(site) -> bool:
    """A guide site drawn by one of this package's reparameterized discrete distributions."""
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and isinstance(unwrap(site["fn"]), Reparameterized)
        and support_kind(site["fn"].support) is not None
    )


def _enumerable(fn, kind: str) -> bool:
    """Whether Pyro can enumerate ``fn`` site-wise (no extra event dims over the base)."""
    return fn.has_enumerate_support and fn.event_dim == (1 if kind == "one_hot" else 0)


def enumeration_ids(model_trace, names: list[str]) -> dict:
    """Enumeration id of each named, enumerated site of ``model_trace`` -> its name."""
    ids = {}
    for name in names:
        infer = model_trace.nodes[name]["infer"]
        ids[infer["_dim_to_id"][infer["_enumerate_dim"]]] = name
    return ids


def factor_parents(site, ids: dict) -> dict:
    """The enumerated sites (of ``ids``) that a site's factor depends on: dim -> name."""
    value, fn = site["value"], site["fn"]
    shape = broadcast_shape(fn.batch_shape, value.shape[: value.dim() - fn.event_dim])
    return {
        dim: ids[id_]
        for dim, id_ in site["infer"].get("_dim_to_id", {}).items()
        if id_ in ids and len(shape) >= -dim and shape[dim] > 1
    }


def over_budget(model_trace, names: list[str], max_configurations: int) -> set:
    """The named enumerated sites to take out of enumeration so that no factor's enumerated
    parents (among ``names``, in trace order) exceed ``max_configurations`` joint configurations:
    for each factor over the budget, its parents from the last one backwards."""
    ids = enumeration_ids(model_trace, names)
    demote = set()
    for site in model_trace.nodes.values():
        if site["type"] != "sample":
            continue
        parents = factor_parents(site, ids)
        sizes = {name: model_trace.nodes[name]["value"].shape[0] for name in parents.values()}
        order = sorted(sizes, key=names.index)
        while math.prod(sizes[n] for n in order) > max_configurations:
            demote.add(order.pop())
    return demote


class _ReplayOrEnumerate(Messenger):
    """Replay the guide's values, except at the guide's reparameterized discrete sites, which are
    marked for parallel enumeration (when Pyro can enumerate them and they are not scored at the
    sample). Discrete model sites that the guide does not sample are marked too (summed out)."""

    def __init__(self, guide_trace, candidates: dict, scored_at_sample: set) -> None:
        super().__init__()
        self.guide_trace = guide_trace
        self.candidates = candidates
        self.scored_at_sample = scored_at_sample
        self.not_enumerable: dict[str, str] = {}

    def _pyro_sample(self, msg) -> None:
        name = msg["name"]
        if msg["is_observed"]:
            return
        if name not in self.guide_trace:
            if site_is_subsample(msg):
                return  # the model draws its own minibatch
            fn = msg["fn"]
            if fn.support.is_discrete:
                if not fn.has_enumerate_support:
                    raise ValueError(
                        f"model site {name!r} is discrete, the guide does not sample it, and it "
                        f"cannot be enumerated ({type(unwrap(fn)).__name__}): sample it in the "
                        "guide (e.g. with pyro_reinmax.infer.AutoReinMax) or write it as a "
                        "one-hot or Bernoulli site."
                    )
                msg["infer"].setdefault("enumerate", "parallel")
            return
        guide_site = self.guide_trace.nodes[name]
        kind = self.candidates.get(name)
        if kind is not None and name not in self.scored_at_sample:
            if _enumerable(msg["fn"], kind):
                msg["infer"]["enumerate"] = "parallel"
                msg["infer"]["_pyro_reinmax_local"] = True
                return
            self.not_enumerable[name] = type(unwrap(msg["fn"])).__name__
            self.scored_at_sample.add(name)
        msg["value"] = guide_site["value"]
        msg["infer"] = guide_site["infer"]
        msg["done"] = True


class _AdmitForEnumeration(Messenger):
    """Mark candidate sites for parallel enumeration, in trace order, while the configurations
    visible at each (its enumerated parents' times its own categories) fit the budget."""

    def __init__(self, candidates: dict, refused: set, budget: int, max_plate_nesting: int) -> None:
        super().__init__()
        self.candidates, self.refused = candidates, refused
        self.budget, self.max_plate_nesting = budget, max_plate_nesting

    def _pyro_sample(self, msg) -> None:
        name, fn = msg["name"], msg["fn"]
        kind = self.candidates.get(name)
        if msg["is_observed"] or kind is None or name in self.refused:
            return
        shape = fn.batch_shape
        visible = math.prod(shape[: max(0, len(shape) - self.max_plate_nesting)])
        categories = fn.event_shape[-1] if kind == "one_hot" else 2
        if not _enumerable(fn, kind) or visible * categories > self.budget:
            self.refused.add(name)
            return
        msg["infer"]["enumerate"] = "parallel"


def choose_enumerated(
    model, args, kwargs, candidates: dict, max_configurations: int, max_plate_nesting: int
) -> list[str]:
    """The candidate sites (name -> ``"one_hot"`` or ``"bernoulli"``) that exact enumeration can
    sum out with no factor over ``max_configurations`` joint configurations of enumerated
    parents: admitted greedily in trace order by tracing the model once (more if a factor
    downstream goes over the budget, which takes its last enumerated parent out)."""
    refused: set = set()
    while True:
        admit = _AdmitForEnumeration(candidates, refused, max_configurations, max_plate_nesting)
        enumerate_ = EnumMessenger(first_available_dim=-1 - max_plate_nesting)
        with poutine.block():
            trace = poutine.trace(enumerate_(admit(model))).get_trace(*args, **kwargs)
        trace = prune_subsample_sites(trace)
        enumerated = [
            name
            for name, site in trace.nodes.items()
            if name in candidates and site["infer"].get("_enumerate_dim") is not None
        ]
        demote = over_budget(trace, enumerated, max_configurations)
        if not demote:
            return enumerated
        refused |= demote


class TraceLocalEnum_ELBO(TraceEnum_ELBO):
    r"""ELBO whose model factors are contracted with the guide's sampled one-hot values along their
    parallel-enumeration dimensions: the gradient of each factor is that of its multilinear
    extension :math:`\sum_c (\prod_i z_{i, c_i}) \log f(c)` (see the module docstring).

    Use it like ``TraceMeanField_ELBO``: a guide that samples the discrete sites with this
    package's reparameterized distributions (``AutoReinMax``, ``ReinMaxOneHotCategorical``,
    ``ReinMaxBernoulli``, ...), the model unchanged. Discrete model sites the guide does not sample
    are summed out exactly (they are marked for parallel enumeration; mark them yourself to choose
    otherwise). ``pyro.plate``, subsampling, ``pyro.markov``, ``poutine.mask`` and ``poutine.scale``
    work as under ``TraceEnum_ELBO``.

    Args:
        max_configurations: the largest number of configurations of sampled discrete parents that
            one factor may be evaluated at (per plate element). A factor over the budget has its
            parents scored at the sample (as ``Trace_ELBO`` would) from the last enumerated one
            backwards until it fits, with one warning naming the sites. Default 4096.
        analytic_kl: score each sampled site's own prior factor and its guide term by the exact
            expectation under the guide, :math:`\sum_k q_k (\log q_k - \log p(k \mid \ldots))`
            (its parents contracted with their samples), as ``TraceMeanField_ELBO`` does. With
            ``False``, the loss on a given sample equals ``Trace_ELBO``'s. Default ``True``.
        max_plate_nesting, num_particles, vectorize_particles: as ``TraceEnum_ELBO``; other
            keyword arguments go to it too.

    Which guide sites were enumerated, and which are scored at the sample, is in
    :attr:`enumerated_sites` and :attr:`scored_at_sample` after the first step.
    """

    def __init__(
        self,
        *,
        max_configurations: int = DEFAULT_MAX_CONFIGURATIONS,
        analytic_kl: bool = True,
        **kwargs,
    ) -> None:
        if not (isinstance(max_configurations, int) and max_configurations >= 1):
            raise ValueError(f"max_configurations must be an int >= 1, got {max_configurations!r}.")
        kwargs.setdefault("strict_enumeration_warning", False)
        super().__init__(**kwargs)
        self.max_configurations = max_configurations
        self.analytic_kl = analytic_kl
        self.enumerated_sites: list[str] = []
        self.scored_at_sample: set[str] = set()

    def _get_traces(self, model, guide, args, kwargs):
        if isinstance(poutine.unwrap(guide), Messenger):
            raise NotImplementedError("TraceLocalEnum_ELBO does not support GuideMessenger")
        model, guide = NameFailingSite("model")(model), NameFailingSite("guide")(guide)
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        if self.vectorize_particles:
            guide = self._vectorized_num_particles(guide)
            model = self._vectorized_num_particles(model)
        for _ in range(1 if self.vectorize_particles else self.num_particles):
            yield self._get_trace(model, guide, args, kwargs)

    def _get_trace(self, model, guide, args, kwargs):
        with scoring_priors_exactly():
            return self._get_trace_scored_exactly(model, guide, args, kwargs)

    def _get_trace_scored_exactly(self, model, guide, args, kwargs):
        guide_trace = poutine.trace(guide, graph_type="flat").get_trace(*args, **kwargs)
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and site["infer"].get("enumerate"):
                raise NotImplementedError(
                    f"guide site {name!r} is marked for enumeration: TraceLocalEnum_ELBO samples "
                    "the guide's discrete sites. Sum it out in the model instead (leave it out of "
                    "the guide), or use pyro.infer.TraceEnum_ELBO."
                )
        candidates = {
            name: support_kind(site["fn"].support)
            for name, site in guide_trace.nodes.items()
            if _is_local_candidate(site)
        }
        while True:
            model_trace = self._model_trace(model, guide_trace, candidates, args, kwargs)
            over_budget = self._over_budget(model_trace)
            if not over_budget:
                break
            self.scored_at_sample.update(over_budget)
            warnings.warn(
                f"TraceLocalEnum_ELBO: a factor's sampled discrete parents have more than "
                f"max_configurations={self.max_configurations} joint configurations; sites "
                f"{sorted(over_budget)} are scored at the sample from now on (their factors are "
                "not linearised in them). Raise max_configurations to enumerate them.",
                stacklevel=4,
            )
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace.compute_log_prob()
        guide_trace.compute_score_parts()
        self._contract(model_trace, guide_trace)
        guide_trace.pack_tensors()
        model_trace.pack_tensors(guide_trace.plate_to_symbol)
        return model_trace, guide_trace

    def _model_trace(self, model, guide_trace, candidates, args, kwargs):
        replay = _ReplayOrEnumerate(guide_trace, candidates, self.scored_at_sample)
        enumerated = EnumMessenger(first_available_dim=-1 - self.max_plate_nesting)
        model_trace = poutine.trace(enumerated(replay(model)), graph_type="flat").get_trace(
            *args, **kwargs
        )
        model_trace = prune_subsample_sites(model_trace)
        if replay.not_enumerable:
            warnings.warn(
                "TraceLocalEnum_ELBO: model sites "
                + ", ".join(f"{n!r} ({c})" for n, c in sorted(replay.not_enumerable.items()))
                + " cannot be enumerated site-wise (extra event dims); they are scored at the "
                "sample. Put their event dims in a plate to linearise their factors.",
                stacklevel=5,
            )
        self.enumerated_sites = [
            name
            for name, site in model_trace.nodes.items()
            if site["type"] == "sample" and site["infer"].get("_pyro_reinmax_local")
        ]
        return model_trace

    def _over_budget(self, model_trace) -> set:
        return over_budget(model_trace, self.enumerated_sites, self.max_configurations)

    def _contract(self, model_trace, guide_trace) -> None:
        """Contract every factor with the sampled one-hots of its enumerated parents (with the
        guide's probabilities along a site's own dimension under ``analytic_kl``)."""
        local_ids = enumeration_ids(model_trace, self.enumerated_sites)
        weights, own_weights = {}, {}
        for name in self.enumerated_sites:
            guide_site = guide_trace.nodes[name]
            kind = support_kind(guide_site["fn"].support)
            weights[name] = own_weights[name] = _one_hot_view(kind, guide_site["value"])
            if self.analytic_kl:
                own_weights[name] = _score_by_expectation(guide_site)
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or "log_prob" not in site:
                continue
            parents = factor_parents(site, local_ids)
            log_prob, unscaled = site["log_prob"], site["unscaled_log_prob"]
            for dim, parent in parents.items():
                w = weights_on_dim((own_weights if parent == name else weights)[parent], dim)
                log_prob = contract_dim(log_prob, w, dim)
                unscaled = contract_dim(unscaled, w, dim)
                del site["infer"]["_dim_to_id"][dim]
            site["log_prob"], site["unscaled_log_prob"] = log_prob, unscaled
            site["log_prob_sum"] = log_prob.sum()
            if name in weights:
                del site["infer"]["_enumerate_dim"]
                site["value"] = guide_trace.nodes[name]["value"]


def _score_by_expectation(guide_site) -> torch.Tensor:
    r"""Replace the guide term :math:`\log q(z)` by its expectation :math:`\sum_k q_k \log q_k`;
    return the guide's probabilities ``batch_shape + (K,)``."""
    fn = guide_site["fn"]
    log_probs = torch.log_softmax(unwrap(fn)._one_hot_logits(), -1)
    probs = log_probs.exp()
    negative_entropy = (probs * torch.where(probs > 0, log_probs, 0.0)).sum(-1)
    negative_entropy = negative_entropy.expand(fn.batch_shape)
    log_prob = scale_and_mask(negative_entropy, guide_site["scale"], guide_site["mask"])
    guide_site["unscaled_log_prob"] = negative_entropy
    guide_site["log_prob"] = log_prob
    guide_site["log_prob_sum"] = log_prob.sum()
    guide_site["score_parts"] = ScoreParts(log_prob=log_prob, score_function=0, entropy_term=0)
    return probs.expand(fn.batch_shape + probs.shape[-1:])
