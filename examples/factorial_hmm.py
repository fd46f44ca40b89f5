"""The factorial HMM of the ``fhmm`` example (Ghahramani and Jordan, 1997), shared by both backends:
a documented synthetic data set, the start every method shares, and the exact metric.

M chains of K states run in parallel; each chain m has its own initial distribution and sticky
transition matrix, and the observation at time t is Gaussian around the sum of one weight vector
per chain, selected by the chain's state:

    z[m, 0] ~ Categorical(init[m]),  z[m, t] ~ Categorical(trans[m, z[m, t - 1]])
    x[t]    ~ Normal(sum_m weights[m, z[m, t]], scale)        (D dimensions)

Exact enumeration sums over the K^M joint states of each time step; the metric (the held-out
log-likelihood per time step, states summed out by the forward algorithm on the product space,
one chain's transition at a time) costs M K^(M+1) per step and sequence, in NumPy. Past
``EXACT_CHAINS`` chains that is too large, and the metric is a particle filter's estimate
(``PARTICLES`` particles, a fixed seed: the same noise for every method).
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
EXACT_CHAINS = 8
"""The forward algorithm's product space holds K^M states: up to this many chains."""
PARTICLES = 20_000


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
    """The held-out log-likelihood of the sequences ``x`` under ``p`` per time step: exact up to
    :data:`EXACT_CHAINS` chains (:func:`exact_log_likelihood_per_step`), a particle filter's
    estimate beyond (:func:`particle_log_likelihood_per_step`)."""
    if p.init.shape[0] <= EXACT_CHAINS:
        return exact_log_likelihood_per_step(x, p)
    return particle_log_likelihood_per_step(x, p)


def particle_log_likelihood_per_step(
    x: np.ndarray, p: Parameters, particles: int = PARTICLES, seed: int = 0
) -> float:
    """A bootstrap particle filter's estimate of the log-likelihood of ``x`` per time step: each
    chain's states drawn from its transitions, weighted by the emission, resampled
    (systematically) at every step. Its expectation lies below the exact value (Jensen), by
    little with many particles; the fixed seed gives every method the same noise."""
    rng = np.random.default_rng(seed)
    n, length, _ = x.shape
    chains = p.init.shape[0]
    variance = p.scale**2

    def draw(rows):  # rows (..., K) of probabilities -> one category per row
        return (rng.random(rows.shape[:-1] + (1,)) > rows.cumsum(-1)).sum(-1).clip(max=STATES - 1)

    states = np.stack(
        [draw(np.broadcast_to(p.init[m], (n, particles, STATES))) for m in range(chains)], -1
    )
    total = 0.0
    for t in range(length):
        if t:
            states = np.stack([draw(p.trans[m][states[..., m]]) for m in range(chains)], -1)
        loc = sum(p.weights[m][states[..., m]] for m in range(chains))  # (n, P, D)
        difference = x[:, t, None, :] - loc
        log_w = -0.5 * (difference**2 / variance + np.log(2 * np.pi * variance)).sum(-1)
        total += (logsumexp(log_w, axis=1) - np.log(particles)).sum()
        weights = np.exp(log_w - log_w.max(1, keepdims=True))
        cdf = weights.cumsum(1) / weights.sum(1, keepdims=True)
        positions = (rng.random((n, 1)) + np.arange(particles)) / particles
        chosen = [np.searchsorted(c, u, side="right") for c, u in zip(cdf, positions, strict=True)]
        chosen = np.minimum(np.stack(chosen), particles - 1)
        states = np.take_along_axis(states, chosen[..., None], axis=1)
    return float(total / (n * length))


def exact_log_likelihood_per_step(x: np.ndarray, p: Parameters) -> float:
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
