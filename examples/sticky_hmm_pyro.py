"""A 3-state hidden Markov chain with fixed, sticky transitions and noisy observations (Pyro),
written as NumPyro's ``hmm_enum.py`` writes its models: a ``markov`` loop, the transition row
selected by the previous state. Its posterior is a chain, so a guide that draws the states
independently stays several nats below the log evidence, and one that follows the model's
dependencies can reach it (``AutoReinMax(model, dependencies="model")``)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

STAY, NOISE, LENGTH = 0.95, 2.0, 30
LOCS = (-1.0, 0.0, 1.0)


def transitions(dtype=torch.float64) -> torch.Tensor:
    """Stay with probability 0.95, move to either other state with 0.025."""
    eye = torch.eye(3, dtype=dtype)
    return STAY * eye + (1 - STAY) / 2 * (1 - eye)


def sticky_hmm(data: torch.Tensor) -> None:
    probs_x = transitions(data.dtype)
    locs = torch.tensor(LOCS, dtype=data.dtype)
    x = 0
    for t in pyro.markov(range(len(data))):
        x = pyro.sample(f"x_{t}", dist.Categorical(probs_x[x]))
        pyro.sample(f"y_{t}", dist.Normal(locs[x], NOISE), obs=data[t])


def sticky_data(seed: int = 3, length: int = LENGTH) -> torch.Tensor:
    """A draw from the model (seed 3: the best mean-field guide found is about 4.6 nats below the
    log evidence)."""
    generator = torch.Generator().manual_seed(seed)
    probs_x = transitions()
    states = [0]
    for _ in range(length - 1):
        states.append(int(torch.multinomial(probs_x[states[-1]], 1, generator=generator)))
    noise = torch.randn(length, generator=generator, dtype=torch.float64)
    return torch.tensor(LOCS, dtype=torch.float64)[states] + NOISE * noise


def log_evidence(data: torch.Tensor) -> float:
    """The exact log evidence, every state summed out."""
    elbo = TraceEnum_ELBO(max_plate_nesting=0)
    return -elbo.loss(config_enumerate(sticky_hmm), lambda data: None, data)
