"""The regime-switching chain of the ``regimes`` example, shared by both backends: a documented
synthetic data set, the start every method shares, and the exact metric.

Sequences of T steps switch between K regimes (a sticky Markov chain); each step's observation
is Gaussian around its regime's level. The model is written as a user writes a change-point
model: one integer site per step in a plain Python loop, the level selected by indexing, no
``markov`` annotation. Exact enumeration then needs one tensor dim per step (more than the 64 a
tensor has once T passes 64); the metric sums the states out by the forward algorithm, which
is cheap for one chain (K^2 T per sequence).

    z[0] ~ Categorical(init),  z[t] ~ Categorical(trans[z[t - 1]])
    x[t] ~ Normal(levels[z[t]], scale)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

REGIMES = 3
LENGTH = 200
SEQUENCES = {"train": 8, "test": 8}
STICKINESS = 0.95


@dataclass
class Parameters:
    """init (K,), trans (K, K), levels (K,), scale ()."""

    init: np.ndarray
    trans: np.ndarray
    levels: np.ndarray
    scale: np.ndarray


def true_parameters() -> Parameters:
    """The generating parameters: uniform start, 0.95 on the diagonal, levels -1.5, 0, 1.5,
    scale 0.7."""
    off = (1 - STICKINESS) / (REGIMES - 1)
    trans = np.full((REGIMES, REGIMES), off) + (STICKINESS - off) * np.eye(REGIMES)
    return Parameters(
        init=np.full(REGIMES, 1 / REGIMES),
        trans=trans,
        levels=np.linspace(-1.5, 1.5, REGIMES),
        scale=np.array(0.7),
    )


def sequences(length: int = LENGTH, seed: int = 20261207) -> tuple[np.ndarray, np.ndarray]:
    """Training and test sequences, ``(n, length)`` float64, drawn from :func:`true_parameters`
    with a fixed seed: the same data on every machine."""
    p = true_parameters()
    rng = np.random.default_rng(seed)
    out = []
    for n in SEQUENCES.values():
        states = np.zeros((n, length), dtype=int)
        states[:, 0] = rng.choice(REGIMES, n, p=p.init)
        for t in range(1, length):
            u = rng.random((n, 1))
            states[:, t] = (u > p.trans[states[:, t - 1]].cumsum(-1)).sum(-1)
        out.append(p.levels[states] + p.scale * rng.normal(size=(n, length)))
    return out[0], out[1]


def start(seed: int) -> Parameters:
    """The start every method shares: uniform start and transitions with 0.5 on the diagonal,
    levels spread over [-1, 1] and shuffled with the run's seed, scale 1."""
    rng = np.random.default_rng(seed)
    off = 0.5 / (REGIMES - 1)
    trans = np.full((REGIMES, REGIMES), off) + (0.5 - off) * np.eye(REGIMES)
    return Parameters(
        init=np.full(REGIMES, 1 / REGIMES),
        trans=trans,
        levels=rng.permutation(np.linspace(-1.0, 1.0, REGIMES)),
        scale=np.array(1.0),
    )


def log_likelihood_per_step(x: np.ndarray, p: Parameters) -> float:
    """The exact log-likelihood of the sequences ``x`` under ``p`` (the regimes summed out by the
    forward algorithm), divided by the number of steps."""
    variance = p.scale**2
    emission = -0.5 * ((x[..., None] - p.levels) ** 2 / variance + np.log(2 * np.pi * variance))
    alpha = np.log(p.init) + emission[:, 0]
    log_trans = np.log(p.trans)
    for t in range(1, x.shape[1]):
        alpha = logsumexp(alpha[:, :, None] + log_trans, axis=1) + emission[:, t]
    return float(logsumexp(alpha, axis=-1).sum() / x.size)
