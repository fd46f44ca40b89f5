r"""SVI on several processes with PyTorch's ``DistributedDataParallel`` (Pyro): each process (rank)
holds one shard of the data, and the ranks' gradients together are the gradient of the ELBO of
the whole data.

With :math:`R` ranks, rank :math:`r` computes the loss of its shard :math:`S_r` with every site
inside a sharded plate scaled by :math:`R`,

.. math:: L_r = R \sum_{i \in S_r} \ell_i(\theta, \phi_i) + g(\theta),

where :math:`\ell_i` are the terms of datum :math:`i` (its likelihood and its local latents' KL)
and :math:`g` the global latents' terms. DDP averages the gradients of the *global* parameters
:math:`\theta` (networks, amortised encoders, global latents' guide): :math:`\tfrac1R \sum_r
\nabla_\theta L_r = \nabla_\theta \big(\sum_i \ell_i + g\big)`, the gradient of the whole data's
loss. *Local* parameters :math:`\phi_i` (per-datum guide logits and locations) are partitioned:
rank :math:`r` holds and updates only those of :math:`S_r`, outside DDP, with the gradient
:math:`\tfrac1R \nabla_{\phi_i} L_r = \nabla_{\phi_i} \ell_i`
(:meth:`DataParallelLoss.finish_backward`). So one step on :math:`R` ranks is one step on the
union of their shards.

A rank's shard is itself a minibatch or a fixed part of the data; a plate that subsamples inside a
shard scales as usual, and :math:`R` multiplies that scale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyro
import torch
from pyro.infer import ELBO
from pyro.poutine.messenger import Messenger
from torch import nn

__all__ = ["DataParallelLoss", "ShardScale", "local_parameter_names"]


class ShardScale(Messenger):
    """Multiply the scale of every sample site inside one of ``plates`` by ``world_size``: the
    loss of one rank's shard as its share of the whole data's loss."""

    def __init__(self, plates: Iterable[str], world_size: int) -> None:
        super().__init__()
        self.plates = frozenset(plates)
        self.world_size = world_size

    def _process_message(self, msg: dict) -> None:
        if msg["type"] != "sample":
            return
        if any(frame.name in self.plates for frame in msg["cond_indep_stack"]):
            msg["scale"] = self.world_size * msg["scale"]


def local_parameter_names(guide: nn.Module, plates: Iterable[str]) -> set[str]:
    """The names (in ``guide.named_parameters()``) of the guide's parameters that belong to a site
    inside one of ``plates``: per-datum logits of ``AutoReinMax``, per-datum locations and scales of
    ``AutoNormal`` and the like, whose parameter is named after its site. Call it after the guide
    has run once."""
    plates = frozenset(plates)
    parts = list(guide) if isinstance(guide, nn.ModuleList) else [guide]
    local_sites = set()
    for part in parts:
        trace = getattr(part, "prototype_trace", None)
        if trace is None:
            continue
        for name, site in trace.nodes.items():
            stack = site.get("cond_indep_stack", ())
            if site["type"] == "sample" and any(f.name in plates for f in stack):
                local_sites.add(name)
    names = set()
    for name, _ in guide.named_parameters():
        stem = name.removesuffix("_unconstrained")
        if any(stem.endswith("." + site) for site in local_sites):
            names.add(name)
    return names


class DataParallelLoss(nn.Module):
    """The loss of one rank's shard, as a module to wrap in ``DistributedDataParallel``.

    Its registered parameters are the global ones: every parameter of Pyro's parameter store
    (networks registered with ``pyro.module``, ``PyroModule`` parameters, ``pyro.param``) except the
    guide's local ones (:func:`local_parameter_names`), which stay outside DDP, one shard per rank.
    DDP broadcasts the global parameters from rank 0 and averages their gradients. Build it after
    the loss has been evaluated once on the rank's shard (so that every parameter exists); after
    ``loss.backward()`` call :meth:`finish_backward`.

    :param model, guide: the model and guide, called with each rank's shard.
    :param elbo: an ELBO with ``differentiable_loss`` (``TraceMeanField_ELBO``, ``TraceEnum_ELBO``,
        ``TraceLocalEnum_ELBO``, ``TraceRLOO_ELBO``, ...).
    :param plates: the names of the plates over which the data are sharded.
    :param world_size: the number of ranks :math:`R`.
    """

    def __init__(
        self,
        model: Callable,
        guide: nn.Module,
        elbo: ELBO,
        *,
        plates: Iterable[str],
        world_size: int,
    ) -> None:
        super().__init__()
        scale = ShardScale(plates, world_size)
        self._loss = lambda *args, **kwargs: elbo.differentiable_loss(
            scale(model), scale(guide), *args, **kwargs
        )
        self.world_size = world_size
        named = dict(guide.named_parameters())
        self.local_parameters = [
            named[name] for name in sorted(local_parameter_names(guide, plates))
        ]
        local = {id(p) for p in self.local_parameters}
        store = dict(pyro.get_param_store().named_parameters())
        plain = [
            n for n, p in store.items() if id(p) not in local and not isinstance(p, nn.Parameter)
        ]
        if plain:
            raise TypeError(
                f"DataParallelLoss: the parameters {plain} were made by pyro.param, which DDP "
                "cannot synchronise; declare them in a PyroModule (PyroParam) or an nn.Module "
                "registered with pyro.module"
            )
        self.global_parameters = nn.ParameterList(p for p in store.values() if id(p) not in local)
        self._known = set(store)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = self._loss(*args, **kwargs)
        if len(pyro.get_param_store()) > len(self._known):  # cheaper than the names per step
            new = sorted(set(pyro.get_param_store().keys()) - self._known)
            raise RuntimeError(
                f"DataParallelLoss: the parameters {new[:5]} appeared after it was built, so DDP "
                "does not synchronise them (a model whose sites depend on its arguments); build "
                "it after the loss has run on every structure of the model's arguments"
            )
        return loss

    @torch.no_grad()
    def finish_backward(self) -> None:
        """Divide the local parameters' gradients by :math:`R` (DDP has averaged the global
        ones): each is then its datum's gradient of the whole data's loss."""
        for parameter in self.local_parameters:
            if parameter.grad is not None:
                parameter.grad.div_(self.world_size)
