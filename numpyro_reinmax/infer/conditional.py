r"""The logits of a structured guide's site as a function of its parents' one-hot draws (NumPyro):
an additive layer (the table is :func:`reinmax_core.dependencies.table_logits`, shared), and the
differentiable one-hot of a draw that a child is conditioned on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from numpyro.primitives import Messenger

from reinmax_core.dependencies import weighted_rows

ONE_HOT = "one_hot"
"""The ``infer`` key under which ``TraceLocalEnum_ELBO`` leaves an integer site's one-hot draw."""


class RecordedOneHot(Messenger):
    """Inside a guide, around one ``numpyro.sample``: the one-hot draw the ELBO left in the site's
    ``infer`` (an integer site drawn through its one-hot estimator), else None."""

    def __init__(self) -> None:
        super().__init__()
        self.one_hot = None

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "sample":
            self.one_hot = msg["infer"].get(ONE_HOT)


def drawn_one_hot(kind: str, value: Array, categories: int, recorded: RecordedOneHot) -> Array:
    """A draw as a one-hot over its categories, differentiable where the estimator made it so
    (one-hot and 0/1 draws; an integer draw through the ELBO's recorded one-hot, else constant)."""
    if kind == "one_hot":
        return value
    if kind == "bernoulli":
        return jnp.stack([1 - value, value], -1)
    if recorded is not None:
        return recorded
    return jax.nn.one_hot(value, categories, dtype=jnp.result_type(float))


def additive_logits(bias: Array, weights: list, parents: list, cell_dims: int) -> Array:
    r""":math:`b + \sum_p W_p^\top e_p`, with ``weights`` of shape ``batch + (\sum_p K_p,) +
    cell`` stacking every parent's :math:`W_p`."""
    batch = jnp.broadcast_shapes(*(jnp.shape(one_hot)[:-1] for one_hot in parents))
    stacked = jnp.concatenate(
        [jnp.broadcast_to(one_hot, batch + jnp.shape(one_hot)[-1:]) for one_hot in parents], -1
    )
    return bias + weighted_rows(stacked, weights, cell_dims, jnp.einsum)
