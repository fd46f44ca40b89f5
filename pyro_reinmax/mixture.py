r"""Mixture likelihoods written so that straight-through estimators can fit them.

A one-hot assignment :math:`z` can select a component in two ways:

* select the parameters, then score once: :math:`\log \mathcal N(x \mid z^\top \mu, z^\top \sigma)`.
  The cost is strongly non-linear in :math:`z`; straight-through gradients, ReinMax's included,
  follow its tangent at a one-hot corner and can point the wrong way. (Measured on Old Faithful,
  2 components, ``benchmarks/mixture_formulation.py``: every straight-through guide collapses
  toward one component.)
* score every component, then select: :math:`\sum_k z_k \log p_k(x)`. This is the same function at
  every one-hot :math:`z` and is linear in :math:`z`, where ReinMax and straight-through are
  unbiased; their guides then reach the enumeration optimum.

:class:`OneHotMixture` is the second form as a distribution. It also runs unchanged under
enumeration: an enumerated assignment of shape ``(K, 1, ..., K)`` broadcasts.
"""

from __future__ import annotations

import copy

import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.util import broadcast_shape
from pyro.ops.indexing import Vindex
from pyro.util import ignore_jit_warnings
from torch import Tensor
from torch.distributions import constraints

from .masking import select
from .validation import check_one_hot, validation_enabled

__all__ = ["OneHotMixture"]


class OneHotMixture(TorchDistribution):
    r"""The likelihood of ``x`` under the component that the one-hot ``assignment`` selects.

    .. math:: \log p(x \mid z) = \sum_k z_k \log p_k(x)

    linear in :math:`z` (the K-component analogue of Pyro's ``MaskedMixture``), with gradients
    :math:`\partial/\partial z_k = \log p_k(x)` for the assignment's estimator.

    Args:
        assignment: one-hot values of shape ``(..., K)``, e.g. a sample of
            :class:`~pyro_reinmax.ReinMaxOneHotCategorical` or an enumerated value.
        components: a distribution whose rightmost batch axis indexes the K components, e.g.
            ``dist.Normal(locs, scales)`` with ``locs.shape == (K,)``, or ``.to_event(1)`` of a
            ``(K, D)`` Normal for D-dimensional data.
        validate_args: as for every torch distribution.

    Example:
        In a model, ``z = pyro.sample("z", OneHotCategorical(logits=weights))`` then
        ``pyro.sample("x", OneHotMixture(z, dist.Normal(locs, scales)), obs=x)``. Each point is
        scored by the component its one-hot selects:

        >>> import torch, pyro.distributions as dist
        >>> from pyro_reinmax import OneHotMixture
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> mixture = OneHotMixture(z, dist.Normal(torch.tensor([-1.0, 1.0]), 1.0))
        >>> mixture.log_prob(torch.tensor([-1.0, 3.0]))
        tensor([-0.9189, -2.9189])
    """

    arg_constraints: dict = {}

    def __init__(self, assignment: Tensor, components, validate_args: bool | None = None) -> None:
        if not components.batch_shape:
            raise ValueError(
                "components must have a batch axis of components (the rightmost batch axis), "
                f"got batch_shape {tuple(components.batch_shape)}."
            )
        num_components = components.batch_shape[-1]
        with ignore_jit_warnings():  # shapes are constants of a trace
            if assignment.dim() < 1 or assignment.shape[-1] != num_components:
                raise ValueError(
                    f"assignment must end in {num_components} categories (one per component), "
                    f"got shape {tuple(assignment.shape)}."
                )
            batch_shape = broadcast_shape(assignment.shape[:-1], components.batch_shape[:-1])
        if validation_enabled(validate_args):
            check_one_hot("assignment", assignment)
        self.assignment = assignment
        self.components = components
        super().__init__(torch.Size(batch_shape), components.event_shape, validate_args)

    @constraints.dependent_property
    def support(self):
        return self.components.support

    @property
    def has_rsample(self) -> bool:
        return self.components.has_rsample

    def _component_log_probs(self, value: Tensor) -> Tensor:
        """``log p_k(value)`` for every component, ``value`` with its component axis inserted.

        Scored without the components' own validation: a component that the assignment does not
        select may see a value outside its support (scored -inf, weighted by 0). Categorical
        components are scored by a gather: torch's ``Categorical.log_prob`` would broadcast the
        ``(..., K, V)`` table to every value first.
        """
        if isinstance(self.components, torch.distributions.Categorical):
            return Vindex(self.components.logits)[..., value.long()]
        unchecked = copy.copy(self.components)
        unchecked._validate_args = False
        return unchecked.log_prob(value)

    def _select_component(self, per_component: Tensor) -> Tensor:
        """Contract ``(..., K, *event_shape)`` with the assignment over the component axis."""
        event_dims = len(self.event_shape)
        weights = self.assignment.reshape(self.assignment.shape + (1,) * event_dims)
        return (weights * per_component).sum(-1 - event_dims)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(OneHotMixture, _instance)
        batch_shape = torch.Size(batch_shape)
        new.assignment = self.assignment.expand(batch_shape + self.assignment.shape[-1:])
        new.components = self.components
        super(OneHotMixture, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        value = value.unsqueeze(-1 - len(self.event_shape))
        if self._validate_args:
            inside = self.components.support.check(value) | (self.assignment == 0)
            if not inside.all():
                raise ValueError(
                    "The value argument must be within the support of the component that the "
                    f"assignment selects ({self.components.support})."
                )
        return select(self.assignment, self._component_log_probs(value))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape) if self.has_rsample else self._draw(sample_shape)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return self._draw(sample_shape, reparameterized=True)

    def _draw(self, sample_shape: torch.Size, reparameterized: bool = False) -> Tensor:
        components = self.components.expand(self.batch_shape + self.assignment.shape[-1:])
        draw = components.rsample if reparameterized else components.sample
        return self._select_component(draw(torch.Size(sample_shape)))

    @property
    def mean(self) -> Tensor:
        return self._select_component(self.components.mean).expand(self._extended_shape())
