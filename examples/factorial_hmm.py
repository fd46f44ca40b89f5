"""The factorial HMM of the ``fhmm`` example (Ghahramani and Jordan, 1997), shared by both backends:
a documented synthetic data set, the start every method shares, and the exact metric.

M chains of K states run in parallel; each chain m has its own initial distribution and sticky
transition matrix, and the observation at time t is Gaussian around the sum of one weight vector
per chain, selected by the chain's state:

    z[m, 0] ~ Categorical(init[m]),  z[m, t] ~ Categorical(trans[m, z[m, t - 1]])
    x[t]    ~ Normal(sum_m weights[m, z[m, t]], scale)        (D dimensions)

Exact enumeration sums over the K^M joint states of each time step; the metric (the held-out
log-likelihood per time step, states summed out by the forward algorithm on the product space,
one chain's transition at a time) costs M K^(M+1) per step and sequence, in NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

STATES = 4
LENGTH = 20
DIMENSIONS = 3
SEQUENCES = {"train": 60, "test": 30}
STICKINESS = 0.85


@dataclass
class Parameters:
    """init (M, K), trans (M, K, K), weights (M, K, D), scale (D,)."""

    init: np.ndarray
    trans: np.ndarray
    weights: np.ndarray
    scale: np.ndarray


def true_parameters(chains: int, seed: int = 20261127) -> Parameters:
    """The generating parameters: uniform starts, sticky transitions (0.85 on the diagonal),
    weights N(0, 1), scale 0.5 in every dimension."""
    rng = np.random.default_rng(seed)
    off = (1 - STICKINESS) / (STATES - 1)
    trans = np.full((chains, STATES, STATES), off) + (STICKINESS - off) * np.eye(STATES)
    return Parameters(
        init=np.full((chains, STATES), 1 / STATES),
        trans=trans,
        weights=rng.normal(size=(chains, STATES, DIMENSIONS)),
        scale=np.full(DIMENSIONS, 0.5),
    )


def sequences(
    chains: int, length: int = LENGTH, seed: int = 20261127
) -> tuple[np.ndarray, np.ndarray]:
    """Training and test sequences, ``(n, length, DIMENSIONS)`` float64, drawn from
    :func:`true_parameters` with a fixed seed: the same data on every machine."""
    p = true_parameters(chains, seed)
    rng = np.random.default_rng(seed + 1)
    out = []
    for n in SEQUENCES.values():
        states = np.zeros((n, chains), dtype=int)
        x = np.zeros((n, length, DIMENSIONS))
        for t in range(length):
            for m in range(chains):
                rows = p.init[m][None] if t == 0 else p.trans[m][states[:, m]]
                states[:, m] = (rng.random((n, 1)) > rows.cumsum(-1)).sum(-1)
            loc = sum(p.weights[m][states[:, m]] for m in range(chains))
            x[:, t] = loc + p.scale * rng.normal(size=(n, DIMENSIONS))
        out.append(x)
    return out[0], out[1]


def start(chains: int, seed: int) -> Parameters:
    """The start every method shares: uniform starts and transitions with 0.5 on the diagonal,
    weights N(0, 0.5^2) drawn with the run's seed, scale 1."""
    rng = np.random.default_rng(seed)
    off = 0.5 / (STATES - 1)
    trans = np.full((chains, STATES, STATES), off) + (0.5 - off) * np.eye(STATES)
    return Parameters(
        init=np.full((chains, STATES), 1 / STATES),
        trans=trans,
        weights=0.5 * rng.normal(size=(chains, STATES, DIMENSIONS)),
        scale=np.ones(DIMENSIONS),
    )


def log_likelihood_per_step(x: np.ndarray, p: Parameters) -> float:
    """The exact log-likelihood of the sequences ``x`` under ``p`` (states summed out by the
    forward algorithm over the K^M joint states), divided by the number of time steps."""
    chains = p.init.shape[0]
    # emission means of every joint state: (K, ..., K, D) with M state axes
    loc = sum(
        p.weights[m].reshape((1,) * m + (STATES,) + (1,) * (chains - m - 1) + (DIMENSIONS,))
        for m in range(chains)
    )
    variance = p.scale**2

    def emission(x_t):  # (n, D) -> (n, K, ..., K)
        difference = x_t.reshape((len(x_t),) + (1,) * chains + (DIMENSIONS,)) - loc
        return -0.5 * (difference**2 / variance + np.log(2 * np.pi * variance)).sum(-1)

    log_init = np.log(p.init)
    alpha = emission(x[:, 0]) + sum(
        log_init[m].reshape((1,) * (m + 1) + (STATES,) + (1,) * (chains - m - 1))
        for m in range(chains)
    )
    log_trans = np.log(p.trans)
    for t in range(1, x.shape[1]):
        for m in range(chains):  # one chain's transition: sum over its previous state
            axis = m + 1
            moved = np.moveaxis(alpha, axis, -1)[..., :, None] + log_trans[m]
            alpha = np.moveaxis(logsumexp(moved, axis=-2), -1, axis)
        alpha = alpha + emission(x[:, t])
    total = logsumexp(alpha.reshape(len(x), -1), axis=-1).sum()
    return float(total / (x.shape[0] * x.shape[1]))
