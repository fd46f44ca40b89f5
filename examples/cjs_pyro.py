"""A capture-recapture model (Cormack-Jolly-Seber), written as Pyro's
``examples/capture_recapture/cjs.py`` writes its ``model_1``: each animal's survival is an
absorbing chain of Bernoulli states (alive, then dead for good), seen through recaptures, with the
states before an animal's first capture masked out. The data are generated with a fixed seed
(Pyro's example downloads the dipper data, which this project may not)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.distributions.utils import clamp_probs

SURVIVAL, RECAPTURE = 0.75, 0.6


def model_1(capture_history: torch.Tensor) -> None:
    """Pyro's ``model_1``: constant survival ``phi`` and recapture ``rho``."""
    N, T = capture_history.shape
    phi = pyro.sample("phi", dist.Uniform(0.0, 1.0))  # survival probability
    rho = pyro.sample("rho", dist.Uniform(0.0, 1.0))  # recapture probability
    with pyro.plate("animals", N, dim=-1):
        z = torch.ones(N)
        # no log probabilities for an animal before its first capture
        first_capture_mask = torch.zeros(N).bool()
        for t in pyro.markov(range(T)):
            with poutine.mask(mask=first_capture_mask):
                mu_z_t = first_capture_mask.float() * phi * z + (1 - first_capture_mask.float())
                z = pyro.sample(
                    f"z_{t}", dist.Bernoulli(clamp_probs(mu_z_t)), infer={"enumerate": "parallel"}
                )
                mu_y_t = rho * z
                pyro.sample(f"y_{t}", dist.Bernoulli(mu_y_t), obs=capture_history[:, t])
            first_capture_mask |= capture_history[:, t].bool()


def capture_history(animals: int = 60, occasions: int = 7, seed: int = 0) -> torch.Tensor:
    """Animals first caught at occasion 0, 1 or 2, then alive with probability ``SURVIVAL`` per
    occasion until they die, and recaptured alive with probability ``RECAPTURE``."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(0, 3, (animals,), generator=generator)
    history = torch.zeros(animals, occasions)
    for n in range(animals):
        alive = True
        for t in range(int(first[n]), occasions):
            if t > first[n]:
                alive = alive and bool(torch.rand(1, generator=generator) < SURVIVAL)
            recaptured = alive and bool(torch.rand(1, generator=generator) < RECAPTURE)
            history[n, t] = float(t == first[n] or recaptured)
    return history
