"""The models of ``svi_scaling.py`` and one timed SVI step per method, in NumPyro (float32, the
whole step under ``jax.jit``)."""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO
from numpyro.optim import Adam

import numpyro_reinmax as nr
from numpyro_reinmax.infer import AutoReinMax, TraceMeanField_ELBO


def mixture(x, num_components: int):
    """x_n ~ sum_k pi_k N(locs_k, I), the assignment a one-hot site."""
    init = jax.random.normal(jax.random.PRNGKey(1), (num_components, x.shape[-1]))
    locs = numpyro.param("locs", init)
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", nr.OneHotCategorical(logits=jnp.zeros(num_components)))
        numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0).to_event(1)), obs=x)


def coupled(x, num_latents: int):
    """x_n ~ N(sum_m W_m z_nm, I) with ``num_latents`` one-hot sites of 4 categories."""
    init = jax.random.normal(jax.random.PRNGKey(1), (num_latents, 4, x.shape[-1]))
    weights = numpyro.param("weights", init)
    with numpyro.plate("data", x.shape[0]):
        mean = 0.0
        for m in range(num_latents):
            z = numpyro.sample(f"z{m}", nr.OneHotCategorical(logits=jnp.zeros(4)))
            mean = mean + z @ weights[m]
        numpyro.sample("x", dist.Normal(mean, 1.0).to_event(1), obs=x)


def step_seconds(kind: str, method: str, size: tuple, points: int, steps: int, device: str):
    """Median seconds of one jitted SVI step of ``method`` on the ``kind`` model of ``size``."""
    jax.config.update("jax_platforms", "cuda" if device == "cuda" else "cpu")
    if kind == "mixture":
        k, d = size
        model, x, static = mixture, jax.random.normal(jax.random.PRNGKey(0), (points, d)), k
    else:
        (m,) = size
        model, x, static = coupled, jax.random.normal(jax.random.PRNGKey(0), (points, 8)), m
    if method == "enum":
        model, guide, loss = nr.enum_onehot(model), (lambda *_: None), TraceEnum_ELBO()
    else:
        estimator = "reinmax" if method == "reinmax" else "score_function"
        guide = AutoReinMax(model, estimator=estimator)
        loss = TraceMeanField_ELBO() if method == "reinmax" else TraceGraph_ELBO()
    svi = SVI(model, guide, Adam(0.01), loss)
    state = svi.init(jax.random.PRNGKey(0), x, static)
    update = jax.jit(svi.update, static_argnums=2)
    for _ in range(3):
        state, _ = jax.block_until_ready(update(state, x, static))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, _ = jax.block_until_ready(update(state, x, static))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_peak_gb(device: str) -> float | None:
    """Peak accelerator memory in GB, or None on the CPU (the process's max RSS says it)."""
    if device != "cuda":
        return None
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use", 0) / 2**30


def has_cuda() -> bool:
    return any(d.platform == "gpu" for d in jax.devices())
