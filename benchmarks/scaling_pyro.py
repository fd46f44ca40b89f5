"""The models of ``svi_scaling.py`` and one timed SVI step per method, in Pyro."""

from __future__ import annotations

import statistics
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate
from pyro.optim import Adam

import pyro_reinmax as pr
from pyro_reinmax.infer import AutoReinMax, TraceMeanField_ELBO


def mixture(x, num_components: int):
    """x_n ~ sum_k pi_k N(locs_k, I), the assignment a one-hot site."""
    locs = pyro.param("locs", torch.randn(num_components, x.shape[-1], device=x.device))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pr.OneHotCategorical(logits=x.new_zeros(num_components)))
        pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, 1.0).to_event(1)), obs=x)


def coupled(x, num_latents: int):
    """x_n ~ N(sum_m W_m z_nm, I) with ``num_latents`` one-hot sites of 4 categories."""
    weights = pyro.param("weights", torch.randn(num_latents, 4, x.shape[-1], device=x.device))
    with pyro.plate("data", x.shape[0]):
        mean = 0.0
        for m in range(num_latents):
            z = pyro.sample(f"z{m}", pr.OneHotCategorical(logits=x.new_zeros(4)))
            mean = mean + z @ weights[m]
        pyro.sample("x", dist.Normal(mean, 1.0).to_event(1), obs=x)


def step_seconds(kind: str, method: str, size: tuple, points: int, steps: int, device: str):
    """Median seconds of one SVI step of ``method`` on the ``kind`` model of ``size``."""
    torch.manual_seed(0)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    if kind == "mixture":
        k, d = size
        model, arguments = mixture, (torch.randn(points, d, device=device), k)
    else:
        (m,) = size
        model, arguments = coupled, (torch.randn(points, 8, device=device), m)
    if method == "enum":
        model, guide = config_enumerate(model), (lambda *_: None)
        loss = TraceEnum_ELBO(max_plate_nesting=1)
    else:
        estimator = "reinmax" if method == "reinmax" else "score_function"
        guide = AutoReinMax(model, estimator=estimator)
        loss = TraceMeanField_ELBO() if method == "reinmax" else TraceGraph_ELBO()
    svi = SVI(model, guide, Adam({"lr": 0.01}), loss)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        svi.step(*arguments)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        svi.step(*arguments)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_peak_gb(device: str) -> float | None:
    """Peak accelerator memory in GB, or None on the CPU (the process's max RSS says it)."""
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def has_cuda() -> bool:
    return torch.cuda.is_available()
