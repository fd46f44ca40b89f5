"""Gradient quality against exact gradients, every estimator at the same budget of evaluations.

For each problem, ``f`` is a cost of one-hot categorical variables ``D_i ~ Cat(softmax(theta_i))``
whose expected gradient ``g = d E[f(D)] / d theta`` is computed exactly, by enumerating every joint
configuration. Every estimator gets ``--budget`` evaluations of ``f`` per gradient estimate
(pathwise estimators: the mean of that many one-sample estimates; RLOO: that many samples with the
leave-one-out baseline). Over ``--replicates`` independent estimates:

* relative bias ``|E[g_hat] - g| / |g|``, with the noise floor ``sqrt(tr Var / R) / |g|`` below
  which a bias cannot be told from zero;
* relative variance ``tr Var[g_hat] / |g|^2`` and relative MSE ``E|g_hat - g|^2 / |g|^2``;
* mean cosine similarity between ``g_hat`` and ``g``;

with standard errors from 20 batches of replicates, and the cost of one estimate (sample, ``budget``
evaluations of ``f``, backward) in microseconds: medians of interleaved rounds of batches of 500.
Every statistic is computed in both backends (each problem's ``f`` is written once for both); the
reference package exists for torch only.

    python benchmarks/gradient_quality.py      # all problems; writes results/gradient_quality.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import reinmax as reference_package
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import track
from rich.table import Table

import numpyro_reinmax
import pyro_reinmax
from timing import interleaved_medians

jax.config.update("jax_enable_x64", True)
torch.set_default_dtype(torch.float64)
BATCHES = 20
TIMING_REPLICATES = 500  # estimates per timed batch


# ----------------------------------------------------------------------------------- problems
#
# Each problem gives float64 logits (NumPy) and ``f(d, ops)``, the cost of one-hot draws ``d``
# (shape ``(..., variables, categories)``) written once with the array operations ``ops`` of
# either backend, so that both backends estimate the gradient of the same function.


class Ops(NamedTuple):
    """The array operations the problems use, for one backend."""

    asarray: Callable
    einsum: Callable
    relu: Callable
    softplus: Callable
    log: Callable


TORCH_OPS = Ops(
    lambda x: torch.as_tensor(x, dtype=torch.float64),
    torch.einsum,
    torch.relu,
    F.softplus,
    torch.log,
)
JAX_OPS = Ops(
    partial(jnp.asarray, dtype=jnp.float64), jnp.einsum, jax.nn.relu, jax.nn.softplus, jnp.log
)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _flat(d):
    return d.reshape(d.shape[:-2] + (-1,))


def _normal(generator: torch.Generator, *shape: int) -> np.ndarray:
    return torch.randn(*shape, generator=generator).numpy()


def quadratic(seed: int = 0):
    g = _generator(seed)
    logits = _normal(g, 3, 4)
    a, b = _normal(g, 12, 12), _normal(g, 12)

    def f(d, ops):
        flat = _flat(d)
        return ops.einsum("...i,ij,...j->...", flat, ops.asarray(a), flat) + flat @ ops.asarray(b)

    return "quadratic, 3 variables x 4 categories", logits, f


def cubic(seed: int = 1):
    g = _generator(seed)
    logits = _normal(g, 3, 4)
    a, w = _normal(g, 12, 12), _normal(g, 12) / 2

    def f(d, ops):
        flat = _flat(d)
        quadratic_part = ops.einsum("...i,ij,...j->...", flat, ops.asarray(a), flat)
        return (flat @ ops.asarray(w)) ** 3 + quadratic_part

    return "cubic, 3 variables x 4 categories", logits, f


def paper_polynomial(p: float, seed: int = 2):
    """The paper's polynomial programming loss mean_i |z_i - 0.45|^p over binary variables."""
    logits = 0.5 * _normal(_generator(seed), 12, 2)

    def f(d, ops):
        return (abs(d[..., 1] - 0.45) ** p).mean(-1)

    return f"|z - 0.45|^{p}, 12 binary variables", logits, f


def vae_like(seed: int = 3):
    """A fixed random decoder over 3 latents of 4 categories; cross-entropy to a fixed image."""
    g = _generator(seed)
    logits = _normal(g, 3, 4)
    w1, w2 = _normal(g, 12, 32) / 2, _normal(g, 32, 20) / 3
    image = (torch.rand(20, generator=g) > 0.5).double().numpy()

    def f(d, ops):
        pixels = ops.relu(_flat(d) @ ops.asarray(w1)) @ ops.asarray(w2)
        # binary cross-entropy with logits: softplus(x) - x * y
        return (ops.softplus(pixels) - pixels * ops.asarray(image)).sum(-1)

    return "VAE-like decoder, 3 latents x 4 categories", logits, f


def mixture_assignments(linear: bool, seed: int = 4):
    """Local assignments of 4 points to 3 Gaussian components: the cost -log p(x | z) written as
    sum_k z_k log N(x | loc_k, scale_k) (linear in z) or log N(x | z @ locs, z @ scales)."""
    logits = _normal(_generator(seed), 4, 3)
    x = np.array([-2.0, 0.3, 1.1, 3.0])
    locs, scales = np.array([-2.0, 0.5, 3.0]), np.array([0.6, 1.0, 0.8])

    def normal_log_prob(value, loc, scale, ops):
        return -0.5 * ((value - loc) / scale) ** 2 - ops.log(scale) - 0.5 * math.log(2 * math.pi)

    def f(d, ops):
        if linear:
            per_component = normal_log_prob(x[:, None], locs, scales, np)
            return -(d * ops.asarray(per_component)).sum((-2, -1))
        loc, scale = d @ ops.asarray(locs), d @ ops.asarray(scales)
        return -normal_log_prob(ops.asarray(x), loc, scale, ops).sum(-1)

    form = "linear: sum_k z_k log N_k(x)" if linear else "nonlinear: log N(x | z@locs, z@scales)"
    return f"mixture assignments, {form}", logits, f


def problems():
    return [
        quadratic(),
        cubic(),
        *(paper_polynomial(p) for p in (1.5, 2.0, 3.0)),
        vae_like(),
        mixture_assignments(True),
        mixture_assignments(False),
    ]


def exact_gradient(logits: np.ndarray, f) -> torch.Tensor:
    """d/dtheta of sum over every joint configuration of prod_i q_i(d_i) f(d), by autograd."""
    n, k = logits.shape
    configurations = torch.tensor(list(itertools.product(range(k), repeat=n)))
    one_hot = F.one_hot(configurations, k).double()  # C x n x k
    leaf = torch.tensor(logits).requires_grad_()
    log_q = leaf.log_softmax(-1)
    weights = (one_hot * log_q).sum((-2, -1)).exp()
    (gradient,) = torch.autograd.grad((weights * f(one_hot, TORCH_OPS)).sum(), leaf)
    return gradient


# --------------------------------------------------------------------------------- estimators


class Estimator(NamedTuple):
    """A row of the tables: the rule (a name of the estimator table, or ``"rloo"``/reference),
    its temperature and options."""

    rule: str
    temperature: float = 1.0
    options: dict = {}


ESTIMATORS = {
    "ReinMax tau=1": Estimator("reinmax"),
    "ReinMax tau=1.3": Estimator("reinmax", 1.3),
    "ReinMax tau=1.5": Estimator("reinmax", 1.5),
    "reference reinmax tau=1": Estimator("reference"),
    "ST": Estimator("straight_through"),
    "ST-Gumbel tau=0.5": Estimator("gumbel_straight_through", 0.5),
    "ST-Gumbel tau=1": Estimator("gumbel_straight_through"),
    "GST-1.0 tau=1": Estimator("gapped_straight_through"),
    "GST-1.0 tau=0.5": Estimator("gapped_straight_through", 0.5),
    "GR-MCK S=2 tau=1": Estimator("gumbel_rao", 1.0, {"samples": 2}),
    "GR-MCK S=10 tau=1": Estimator("gumbel_rao", 1.0, {"samples": 10}),
    "GR-MCK S=100 tau=1": Estimator("gumbel_rao", 1.0, {"samples": 100}),
    "GR-MCK S=100 tau=0.5": Estimator("gumbel_rao", 0.5, {"samples": 100}),
    "ReinMax-Rao S=10 tau=1": Estimator("reinmax_rao", 1.0, {"samples": 10}),
    "ReinMax-CV S=10 tau=1 eta=1": Estimator("reinmax_cv", 1.0, {"samples": 10}),
    "ReinMax-CV S=10 tau=1 eta=0.5 tau2=0.7": Estimator(
        "reinmax_cv", 1.0, {"samples": 10, "eta": 0.5, "cv_temperature": 0.7}
    ),
    "RLOO": Estimator("rloo"),
}
"""GR-MCK and GST-1.0 with the settings of the ReinMax authors' VAE code (100 conditional draws,
gap 1); the other rules at their package defaults unless named."""


def torch_estimate(estimator: Estimator, logits, f, budget: int, replicates: int):
    """``replicates`` estimates, each the mean of ``budget`` one-sample estimates (RLOO: one
    estimate from ``budget`` samples with the leave-one-out baseline)."""
    logits = torch.as_tensor(logits)
    if estimator.rule == "rloo":
        probs = logits.softmax(-1)
        sample = pyro_reinmax.sampling.draw_one_hot(probs.expand(replicates, budget, *probs.shape))
        cost = f(sample, TORCH_OPS)  # replicates x budget
        baseline = (cost.sum(1, keepdim=True) - cost) / (budget - 1)
        score = sample - probs  # d log q(D) / d theta for softmax logits
        return ((cost - baseline)[..., None, None] * score).mean(1)
    leaf = logits.expand(replicates, budget, *logits.shape).contiguous().requires_grad_()
    if estimator.rule == "reference":
        sample, _ = reference_package.reinmax(leaf, estimator.temperature)
    else:
        op = getattr(pyro_reinmax, estimator.rule)
        sample, _ = op(leaf, estimator.temperature, **estimator.options)
    (gradient,) = torch.autograd.grad(f(sample, TORCH_OPS).sum(), leaf)
    return gradient.mean(1)


def jax_estimator(estimator: Estimator, logits, f, budget: int, replicates: int):
    """A jitted ``key -> estimates`` for the JAX backend (as :func:`torch_estimate`), or None
    for the torch-only reference package."""
    if estimator.rule == "reference":
        return None
    logits = jnp.asarray(logits)

    if estimator.rule == "rloo":

        def one(key):
            probs = jax.nn.softmax(logits, -1)
            sample = numpyro_reinmax.sampling.draw_one_hot(
                key, jnp.broadcast_to(probs, (budget, *probs.shape))
            )
            cost = f(sample, JAX_OPS)
            baseline = (cost.sum() - cost) / (budget - 1)
            return ((cost - baseline)[:, None, None] * (sample - probs)).mean(0)

    else:
        op = getattr(numpyro_reinmax, estimator.rule)

        def single(key):
            def loss(x):
                sample, _ = op(key, x, estimator.temperature, **estimator.options)
                return f(sample, JAX_OPS)

            return jax.grad(loss)(logits)

        def one(key):
            return jax.vmap(single)(jax.random.split(key, budget)).mean(0)

    batched = jax.jit(jax.vmap(one))

    def run(key):
        return batched(jax.random.split(key, replicates))

    return run


# ------------------------------------------------------------------------------------ statistics


def statistics(estimates: torch.Tensor, exact: torch.Tensor) -> dict:
    """Relative bias, variance, MSE and cosine, each with a batch-means standard error."""
    flat, g = estimates.flatten(1), exact.flatten()
    norm2 = g.pow(2).sum()

    def of(batch):
        mean = batch.mean(0)
        return {
            "relative_bias": ((mean - g).norm() / norm2.sqrt()).item(),
            "relative_variance": (batch.var(0).sum() / norm2).item(),
            "relative_mse": ((batch - g).pow(2).sum(1).mean() / norm2).item(),
            "cosine": F.cosine_similarity(batch, g.expand_as(batch), dim=1).mean().item(),
        }

    overall = of(flat)
    batches = [of(b) for b in flat.chunk(BATCHES)]
    result = {}
    for key, value in overall.items():
        spread = torch.tensor([b[key] for b in batches]).std().item()
        result[key] = value
        result[key + "_se"] = spread / math.sqrt(BATCHES)
    result["bias_noise_floor"] = math.sqrt(overall["relative_variance"] / len(flat))
    return result


def costs(methods: dict, rounds: int) -> dict[str, float]:
    """Microseconds per estimate: interleaved medians of batches of :data:`TIMING_REPLICATES`."""
    medians = interleaved_medians(methods, rounds=rounds)
    return {name: m["median_s"] / TIMING_REPLICATES * 1e6 for name, m in medians.items()}


def evaluate(name, logits, f, args, key) -> dict:
    """Every estimator on one problem, in both backends: statistics and cost per estimate."""
    exact = exact_gradient(logits, f)
    rows, torch_timed, jax_timed = {}, {}, {}
    for label, estimator in ESTIMATORS.items():
        estimates = torch_estimate(estimator, logits, f, args.budget, args.replicates)
        rows[label] = statistics(estimates, exact)
        torch_timed[label] = partial(
            torch_estimate, estimator, logits, f, args.budget, TIMING_REPLICATES
        )
        run = jax_estimator(estimator, logits, f, args.budget, args.replicates)
        if run is None:
            continue
        key, use = jax.random.split(key)
        rows[label]["jax"] = statistics(torch.as_tensor(np.array(run(use))), exact)
        timed = jax_estimator(estimator, logits, f, args.budget, TIMING_REPLICATES)
        jax_timed[label] = partial(lambda timed, key: timed(key).block_until_ready(), timed, use)
    for label, cost in costs(torch_timed, args.rounds).items():
        rows[label]["cost_us_per_estimate"] = cost
    for label, cost in costs(jax_timed, args.rounds).items():
        rows[label]["jax"]["cost_us_per_estimate"] = cost
    return {"problem": name, "exact_gradient_norm": exact.norm().item(), "estimators": rows}


def table(entry: dict, args) -> Table:
    budget = f"{args.budget} evaluations per estimate, {args.replicates} estimates"
    out = Table(title=f"{entry['problem']}: {budget}")
    columns = ["estimator", "rel. bias", "(noise floor)", "rel. variance", "rel. MSE"]
    columns += ["rel. MSE (JAX)", "cosine", "µs/estimate (x ReinMax)", "JAX µs (x ReinMax)"]
    for column in columns:
        out.add_column(column, justify="right")
    rows = entry["estimators"]
    base = rows["ReinMax tau=1"]

    def cost(row, base):
        return f"{row['cost_us_per_estimate']:.2f} ({row['cost_us_per_estimate'] / base:.1f})"

    for estimator, s in rows.items():
        jax_row = s.get("jax")
        out.add_row(
            estimator,
            f"{s['relative_bias']:.3f} ± {s['relative_bias_se']:.3f}",
            f"{s['bias_noise_floor']:.3f}",
            f"{s['relative_variance']:.3f}",
            f"{s['relative_mse']:.3f} ± {s['relative_mse_se']:.3f}",
            "-" if jax_row is None else f"{jax_row['relative_mse']:.3f}",
            f"{s['cosine']:.3f} ± {s['cosine_se']:.3f}",
            cost(s, base["cost_us_per_estimate"]),
            "-" if jax_row is None else cost(jax_row, base["jax"]["cost_us_per_estimate"]),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=4, help="evaluations of f per estimate")
    parser.add_argument("--replicates", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "gradient_quality.json"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    key = jax.random.PRNGKey(0)
    results = []
    for name, logits, f in track(problems(), description="problems"):
        key, use = jax.random.split(key)
        results.append(evaluate(name, logits, f, args, use))
    console = Console(width=200)
    for entry in results:
        console.print(table(entry, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "budget": args.budget,
        "replicates": args.replicates,
        "batches_for_standard_errors": BATCHES,
        "timing_replicates": TIMING_REPLICATES,
        "timing_rounds": args.rounds,
        "torch": torch.__version__,
        "jax": jax.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    args.out.write_text(json.dumps({"meta": meta, "problems": results}, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
