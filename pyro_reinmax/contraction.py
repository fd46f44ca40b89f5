r"""Linear contraction of an enumerated log-factor with sampled one-hot values.

A factor :math:`\log f(c)` evaluated at every configuration :math:`c = (c_1, \dots, c_m)` of its
discrete parents (parallel enumeration puts each parent on a dimension of its own) has the
*multilinear extension* in the parents' one-hot values :math:`z_i`

.. math:: F(z_1, \dots, z_m) = \sum_c \Big(\prod_i z_{i, c_i}\Big) \log f(c).

At one-hot :math:`z` it is :math:`\log f` at the sampled configuration; its gradient in
:math:`z_i` does not depend on :math:`z_i`. Contracting one parent's dimension at a time with its
one-hot weights computes :math:`F` (the contractions commute).
"""

from __future__ import annotations

import torch
from torch import Tensor


def contract_dim(log_factor: Tensor, weights: Tensor, dim: int) -> Tensor:
    r""":math:`\sum_k w_k \log f_k` along ``dim`` (negative), kept as a size-1 dimension.

    ``weights`` broadcasts against ``log_factor`` with the categories on ``dim``. ``-inf`` entries
    stay exact: they contribute 0 where their weight is 0 and ``-inf`` where it is not, and their
    gradients are 0 (finite), as in :func:`~pyro_reinmax.masking.select`.
    """
    masked = torch.isneginf(log_factor)
    total = (weights * log_factor.masked_fill(masked, 0.0)).sum(dim, keepdim=True)
    hits_masked = ((weights != 0) & masked).any(dim, keepdim=True)
    return total.masked_fill(hits_masked, -torch.inf)


def weights_on_dim(one_hot: Tensor, dim: int) -> Tensor:
    """Move the category axis (last) of ``one_hot`` (``batch_shape + (K,)``) to the enumeration
    dimension ``dim`` of a log-factor whose batch axes align with ``batch_shape`` on the right."""
    batch_dims = one_hot.dim() - 1
    categories = one_hot.movedim(-1, 0)
    padding = (1,) * (-dim - 1 - batch_dims)
    return categories.reshape(categories.shape[:1] + padding + categories.shape[1:])
