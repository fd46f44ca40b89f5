r"""The logits of a structured guide's site as a function of its parents' one-hot draws (Pyro):
an additive layer (the table is :func:`reinmax_core.dependencies.table_logits`, shared), and the
differentiable one-hot of a draw that a child is conditioned on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.poutine.messenger import Messenger
from torch import Tensor

from reinmax_core.dependencies import weighted_rows

ONE_HOT = "one_hot"
"""The ``infer`` key under which ``TraceLocalEnum_ELBO`` leaves an integer site's one-hot draw."""


class RecordedOneHot(Messenger):
    """Inside a guide, around one ``pyro.sample``: the one-hot draw the ELBO left in the site's
    ``infer`` (an integer site drawn through its one-hot estimator), else None."""

    def __init__(self) -> None:
        super().__init__()
        self.one_hot: Tensor | None = None

    def _pyro_post_sample(self, msg: dict) -> None:
        self.one_hot = msg["infer"].get(ONE_HOT)


def drawn_one_hot(kind: str, value: Tensor, categories: int, recorded: Tensor | None) -> Tensor:
    """A draw as a one-hot over its categories, differentiable where the estimator made it so
    (one-hot and 0/1 draws; an integer draw through the ELBO's recorded one-hot, else constant)."""
    if kind == "one_hot":
        return value
    if kind == "bernoulli":
        return torch.stack([1 - value, value], -1)
    if recorded is not None:
        return recorded
    return F.one_hot(value.long(), categories).to(torch.get_default_dtype())


def promoting_einsum(subscripts: str, first: Tensor, second: Tensor) -> Tensor:
    """``torch.einsum`` of two tensors in their promoted dtype (as ``*`` would give; JAX's
    ``einsum`` promotes by itself)."""
    dtype = torch.promote_types(first.dtype, second.dtype)
    return torch.einsum(subscripts, first.to(dtype), second.to(dtype))


def additive_logits(bias: Tensor, weights: Tensor, parents: list[Tensor], cell_dims: int) -> Tensor:
    r""":math:`b + \sum_p W_p^\top e_p`, with ``weights`` of shape ``batch + (\sum_p K_p,) +
    cell`` stacking every parent's :math:`W_p`."""
    batch = torch.broadcast_shapes(*(one_hot.shape[:-1] for one_hot in parents))
    stacked = torch.cat([one_hot.expand(batch + one_hot.shape[-1:]) for one_hot in parents], -1)
    return bias + weighted_rows(stacked, weights, cell_dims, promoting_einsum)
