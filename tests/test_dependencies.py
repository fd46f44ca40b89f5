"""``reinmax_core.dependencies``' contractions against their formulas written out, in both
backends: a structured guide's table row at its parents' configuration and its additive layer,
with broadcast batch shapes (the perturbation dimension on the parents, not on the table)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from pyro_reinmax.infer.conditional import promoting_einsum
from reinmax_core.dependencies import table_logits, weighted_rows

BACKENDS = {
    "torch": (torch.tensor, promoting_einsum, np.asarray),
    "jax": (jnp.asarray, jnp.einsum, np.asarray),
}
# (table batch, each parent's batch, parents' categories, cell)
CASES = [
    ((), [(5,), (5,)], (2, 3), (4,)),
    ((6,), [(5, 6), (5, 1)], (3, 2), (4,)),
    ((6,), [(5, 1), (1, 6), (6,)], (2, 2, 3), ()),
    ((2, 6), [(5, 2, 6)], (4,), (3,)),
]


def _tolerance(got: np.ndarray) -> dict:
    # JAX without x64 computes in float32
    return {"rtol": 1e-12} if got.dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-5}


def _one_hots(rng, batch, categories):
    return np.eye(categories)[rng.integers(categories, size=batch)]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("case", CASES)
def test_table_logits_is_the_row_of_the_parents_configuration(backend, case):
    array, einsum, numpy = BACKENDS[backend]
    table_batch, parent_batches, categories, cell = case
    rng = np.random.default_rng(0)
    table = rng.normal(size=table_batch + categories + cell)
    parents = [_one_hots(rng, b, k) for b, k in zip(parent_batches, categories, strict=True)]
    # the formula: sum over configurations of the product of the parents' entries times the row
    batch = np.broadcast_shapes(table_batch, *parent_batches)
    expected = np.zeros(batch + cell)
    for configuration in itertools.product(*(range(k) for k in categories)):
        weight = np.ones(batch)
        for one_hot, c in zip(parents, configuration, strict=True):
            weight = weight * one_hot[..., c]
        row = table[(Ellipsis, *configuration) + (slice(None),) * len(cell)]
        expected = expected + weight.reshape(batch + (1,) * len(cell)) * row
    got = numpy(table_logits(array(table), [array(p) for p in parents], len(cell), einsum))
    np.testing.assert_allclose(got, expected, **_tolerance(got))


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_weighted_rows_is_the_weighted_sum_of_rows(backend):
    array, einsum, numpy = BACKENDS[backend]
    rng = np.random.default_rng(1)
    vector = rng.normal(size=(7, 1, 6, 5))
    rows = rng.normal(size=(3, 6, 5, 4))
    expected = (vector[..., None] * rows).sum(-2)
    got = numpy(weighted_rows(array(vector), array(rows), 1, einsum))
    np.testing.assert_allclose(got, expected, **_tolerance(got))


def test_the_table_row_passes_each_parents_gradient():
    """Its gradient in a parent's one-hot is the table's rows along that parent's categories at
    the other parents' values, as the multilinear formula's."""
    rng = np.random.default_rng(2)
    table = torch.tensor(rng.normal(size=(3, 2, 4)))
    first = torch.tensor(np.eye(3)[[1]], requires_grad=True)
    second = torch.tensor(np.eye(2)[[0]], requires_grad=True)
    weights = torch.tensor(rng.normal(size=4))
    out = (table_logits(table, [first, second], 1, promoting_einsum) * weights).sum()
    grad_first, grad_second = torch.autograd.grad(out, [first, second])
    torch.testing.assert_close(grad_first[0], table[:, 0] @ weights)
    torch.testing.assert_close(grad_second[0], table[1] @ weights)
