r"""Which sampled sites a structured guide conditions each discrete site on, and how.

``AutoReinMax(model, dependencies=...)`` draws the discrete sites in the model's order, each from

.. math:: q(z_i \mid z_{\mathrm{pa}(i)}) = \operatorname{Categorical}\bigl(\operatorname{softmax}
    \ell_i(z_{\mathrm{pa}(i)})\bigr),

where the logits are a function of the parents' one-hot draws :math:`e_p`: a *table*,
:math:`\ell_i = \sum_{c} (\prod_p e_{p, c_p}) W_i[c]`, where the parents have at most
:data:`TABLE_CONFIGURATIONS` joint configurations, else an *additive* layer,
:math:`\ell_i = b_i + \sum_p W_{i,p}^\top e_p`. Both are linear in each parent's one-hot, so the
estimator's backward carries the gradient from a child's draw to its parents' logits.

The parents are read from the model (``"model"``: the sampled discrete sites upstream of a site in
the posterior, from the backend's ``get_dependencies``) or given as ``{site: [parents]}``. A
parent must be a sampled discrete site drawn before its child, in no plate its child is not in;
sites left to enumeration and continuous sites are never parents (the companion guide draws the
continuous ones independently).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

TABLE_CONFIGURATIONS = 64
"""The largest number of joint parent configurations a site's conditional gets a full table for;
past it, an additive layer."""

MODEL = "model"

_BATCH_LETTERS = "abdefghijklmnopqrtuvwxyz"  # einsum labels of batch dims (not s, c)

GUIDE_PARENTS = "guide_parents"
"""The ``infer`` key of a structured guide's sample site: the guide sites its logits depend on."""


def check_dependencies(value):
    """``None``, ``"model"`` or a mapping from site name to a list of site names; else a
    ``TypeError`` that says what the argument takes."""
    if value is None or value == MODEL:
        return value
    if isinstance(value, Mapping) and all(
        isinstance(name, str)
        and isinstance(parents, list | tuple)
        and all(isinstance(parent, str) for parent in parents)
        for name, parents in value.items()
    ):
        return {name: tuple(parents) for name, parents in value.items()}
    raise TypeError(
        'dependencies must be None (independent sites), "model" (read from the model) or a dict '
        f"from site name to a list of parent site names, got {value!r}."
    )


def guide_parents(
    dependencies,
    sampled: Sequence[str],
    plates: Mapping[str, frozenset],
    posterior: Callable[[], Mapping[str, Mapping]],
) -> tuple[dict[str, tuple[str, ...]], list[tuple[str, str]]]:
    """Each sampled site's parents in the guide, checked, and the ``(site, upstream)`` pairs of
    ``"model"``'s dependencies left out because the upstream site lies in a plate the site is not
    in (the site depends on all of that plate's instances).

    Args:
        dependencies: as checked by :func:`check_dependencies`.
        sampled: the guide's discrete sites in the model's order.
        plates: each sampled site's plate names.
        posterior: returns the model's posterior dependencies, ``{upstream: {downstream: ...}}``
            (``get_dependencies(...)["posterior_dependencies"]`` of either backend); called only
            for ``"model"``.
    """
    order = {name: i for i, name in enumerate(sampled)}
    if dependencies is None:
        return {name: () for name in sampled}, []
    if dependencies == MODEL:
        downstream = posterior()
        parents, dropped = {}, []
        for name in sampled:
            upstream = [up for up in sampled[: order[name]] if name in downstream.get(up, ())]
            parents[name] = tuple(up for up in upstream if plates[up] <= plates[name])
            dropped += [(name, up) for up in upstream if not plates[up] <= plates[name]]
        return parents, dropped
    unknown = sorted(set(dependencies) - set(sampled))
    if unknown:
        raise ValueError(
            f"dependencies names {unknown}, which the guide does not sample (its discrete sites "
            f"are {list(sampled)})."
        )
    parents = {}
    for name in sampled:
        given = dependencies.get(name, ())
        for parent in given:
            if parent not in order or order[parent] >= order[name]:
                raise ValueError(
                    f"dependencies[{name!r}] names {parent!r}, which is not a discrete site the "
                    f"guide samples before {name!r} (in the model's order: {list(sampled)}). A "
                    "parent must come first."
                )
            outside = sorted(plates[parent] - plates[name])
            if outside:
                raise ValueError(
                    f"dependencies[{name!r}] names {parent!r}, which lies in plate(s) {outside} "
                    f"that {name!r} is not in: a site can depend on one instance of a parent, "
                    "not on all of a plate's. Leave it out, or give the plate to both sites."
                )
        parents[name] = tuple(dict.fromkeys(given))
    return parents, []


def feeds_guide(parents: Mapping[str, Sequence[str]]) -> frozenset:
    """The sites whose draws other guide sites are conditioned on."""
    return frozenset(parent for given in parents.values() for parent in given)


def uses_table(parent_categories: Sequence[int], amortised: bool = False) -> bool:
    """Whether a site whose parents have these numbers of categories gets a full table of logits
    (it has parents, at most :data:`TABLE_CONFIGURATIONS` configurations of them, and no
    encoder); otherwise a site with parents gets an additive layer."""
    return (
        bool(parent_categories)
        and not amortised
        and math.prod(parent_categories) <= TABLE_CONFIGURATIONS
    )


def weighted_rows(vector, rows, cell_dims: int, einsum: Callable):
    r""":math:`\sum_s v_s R_s` for ``vector`` of shape ``batch_v + (S,)`` and ``rows`` of shape
    ``batch_r + (S,) + cell`` (batch shapes broadcast, right-aligned), as one contraction by the
    backend's ``einsum`` (``torch.einsum`` or ``jnp.einsum``, the same subscripts): nothing of
    size ``batch + (S,) + cell`` is formed. Under ``TraceLocalEnum_ELBO`` the parents' one-hots
    carry the perturbation dimension and the rows do not: the product would hold one copy of
    the rows per element of that dimension."""
    cell = tuple(rows.shape[len(rows.shape) - cell_dims :]) if cell_dims else ()
    rows = rows.reshape(tuple(rows.shape[: len(rows.shape) - cell_dims]) + (math.prod(cell),))
    vector_batch, rows_batch = len(vector.shape) - 1, len(rows.shape) - 2
    batch = _BATCH_LETTERS[: max(vector_batch, rows_batch)]
    vector_labels, rows_labels = (
        batch[len(batch) - vector_batch :],
        batch[len(batch) - rows_batch :],
    )
    out = einsum(f"{vector_labels}s,{rows_labels}sc->{batch}c", vector, rows)
    return out.reshape(tuple(out.shape[:-1]) + cell)


def table_logits(table, parents: Sequence, cell_dims: int, einsum: Callable):
    r""":math:`\sum_c (\prod_p e_{p, c_p}) W[c]` for ``table`` of shape ``batch + (K_1, ...,
    K_m) + cell`` and parents' one-hots of shapes ``batch_p + (K_p,)`` (batch shapes broadcast,
    right-aligned): the parents' joint configuration as one one-hot of :math:`\prod_p K_p`
    entries (their outer product), then :func:`weighted_rows` of the table's rows. PyTorch
    tensors or JAX arrays alike."""
    configuration = parents[0]
    for one_hot in parents[1:]:
        outer = configuration.reshape(tuple(configuration.shape) + (1,)) * one_hot.reshape(
            tuple(one_hot.shape[:-1]) + (1, one_hot.shape[-1])
        )
        configuration = outer.reshape(tuple(outer.shape[:-2]) + (-1,))
    batch = tuple(table.shape[: len(table.shape) - len(parents) - cell_dims])
    cell = tuple(table.shape[len(batch) + len(parents) :])
    rows = table.reshape(batch + (configuration.shape[-1],) + cell)
    return weighted_rows(configuration, rows, cell_dims, einsum)


def guide_ancestors(
    recorded: Mapping[str, Sequence[str]], linearised: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Each linearised guide site's ancestors (the sites its logits depend on, as recorded under
    :data:`GUIDE_PARENTS`, and theirs), in the guide's order; a ``ValueError`` for a parent the
    ELBO does not linearise."""
    ancestors: dict[str, tuple[str, ...]] = {}
    for name in linearised:
        found = set()
        for parent in recorded.get(name, ()):
            if parent not in ancestors:
                raise ValueError(
                    f"guide site {name!r} depends on guide site {parent!r}, which "
                    "TraceLocalEnum_ELBO does not linearise (not drawn, before it, by one of "
                    "this package's reparameterized estimator classes): draw both with the same "
                    "estimator."
                )
            found |= {parent, *ancestors[parent]}
        ancestors[name] = tuple(n for n in linearised if n in found)
    return ancestors


def with_ancestors(
    parents: Sequence[str], ancestors: Mapping[str, Sequence[str]], order: Sequence[str]
) -> tuple[str, ...]:
    """A factor's linearised parents and their guide ancestors, in ``order``."""
    found = set(parents).union(*(ancestors[p] for p in parents))
    if len(found) == len(parents):
        return tuple(parents)
    return tuple(n for n in order if n in found)
