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

with standard errors from 20 batches of replicates. The estimators are the same to 1e-6 in both
backends (``tests/test_parity.py``), so these statistics are computed once, with torch.

    python benchmarks/gradient_quality.py      # all problems; writes results/gradient_quality.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import reinmax as reference_package
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import track
from rich.table import Table

import pyro_reinmax

torch.set_default_dtype(torch.float64)
BATCHES = 20


# ----------------------------------------------------------------------------------- problems


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def quadratic(seed: int = 0):
    g = _generator(seed)
    logits = torch.randn(3, 4, generator=g)
    a, b = torch.randn(12, 12, generator=g), torch.randn(12, generator=g)

    def f(d):
        flat = d.flatten(-2)
        return torch.einsum("...i,ij,...j->...", flat, a, flat) + flat @ b

    return "quadratic, 3 variables x 4 categories", logits, f


def cubic(seed: int = 1):
    g = _generator(seed)
    logits = torch.randn(3, 4, generator=g)
    a, w = torch.randn(12, 12, generator=g), torch.randn(12, generator=g) / 2

    def f(d):
        flat = d.flatten(-2)
        return (flat @ w) ** 3 + torch.einsum("...i,ij,...j->...", flat, a, flat)

    return "cubic, 3 variables x 4 categories", logits, f


def paper_polynomial(p: float, seed: int = 2):
    """The paper's polynomial programming loss mean_i |z_i - 0.45|^p over binary variables."""
    logits = 0.5 * torch.randn(12, 2, generator=_generator(seed))

    def f(d):
        return (d[..., 1] - 0.45).abs().pow(p).mean(-1)

    return f"|z - 0.45|^{p}, 12 binary variables", logits, f


def vae_like(seed: int = 3):
    """A fixed random decoder over 3 latents of 4 categories; cross-entropy to a fixed image."""
    g = _generator(seed)
    logits = torch.randn(3, 4, generator=g)
    w1, w2 = torch.randn(12, 32, generator=g) / 2, torch.randn(32, 20, generator=g) / 3
    image = (torch.rand(20, generator=g) > 0.5).double()

    def f(d):
        pixels = torch.relu(d.flatten(-2) @ w1) @ w2
        return F.binary_cross_entropy_with_logits(
            pixels, image.expand_as(pixels), reduction="none"
        ).sum(-1)

    return "VAE-like decoder, 3 latents x 4 categories", logits, f


def mixture_assignments(linear: bool, seed: int = 4):
    """Local assignments of 4 points to 3 Gaussian components: the cost -log p(x | z) written as
    sum_k z_k log N(x | loc_k, scale_k) (linear in z) or log N(x | z @ locs, z @ scales)."""
    g = _generator(seed)
    logits = torch.randn(4, 3, generator=g)
    x = torch.tensor([-2.0, 0.3, 1.1, 3.0])
    locs, scales = torch.tensor([-2.0, 0.5, 3.0]), torch.tensor([0.6, 1.0, 0.8])

    def f(d):
        if linear:
            per_component = torch.distributions.Normal(locs, scales).log_prob(x[:, None])
            return -(d * per_component).sum((-2, -1))
        return -torch.distributions.Normal(d @ locs, d @ scales).log_prob(x).sum(-1)

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


def exact_gradient(logits: torch.Tensor, f) -> torch.Tensor:
    """d/dtheta of sum over every joint configuration of prod_i q_i(d_i) f(d), by autograd."""
    n, k = logits.shape
    configurations = torch.tensor(list(itertools.product(range(k), repeat=n)))
    one_hot = F.one_hot(configurations, k).double()  # C x n x k
    leaf = logits.clone().requires_grad_()
    log_q = leaf.log_softmax(-1)
    weights = (one_hot * log_q).sum((-2, -1)).exp()
    (gradient,) = torch.autograd.grad((weights * f(one_hot)).sum(), leaf)
    return gradient


# --------------------------------------------------------------------------------- estimators


def _pathwise(op, temperature: float):
    def estimate(logits, f, budget, replicates):
        leaf = logits.expand(replicates, budget, *logits.shape).clone().requires_grad_()
        sample, _ = op(leaf, temperature)
        (gradient,) = torch.autograd.grad(f(sample).sum(), leaf)
        return gradient.mean(1)

    return estimate


def _reference(logits, f, budget, replicates):
    leaf = logits.expand(replicates, budget, *logits.shape).contiguous().requires_grad_()
    sample, _ = reference_package.reinmax(leaf, 1.0)
    (gradient,) = torch.autograd.grad(f(sample).sum(), leaf)
    return gradient.mean(1)


def _rloo(logits, f, budget, replicates):
    """REINFORCE with the leave-one-out baseline (Kool et al., 2019): ``budget`` samples."""
    probs = logits.softmax(-1)
    sample = pyro_reinmax.sampling.draw_one_hot(probs.expand(replicates, budget, *probs.shape))
    cost = f(sample)  # replicates x budget
    baseline = (cost.sum(1, keepdim=True) - cost) / (budget - 1)
    score = sample - probs  # d log q(D) / d theta for softmax logits
    return ((cost - baseline)[..., None, None] * score).mean(1)


ESTIMATORS = {
    "ReinMax tau=1": _pathwise(pyro_reinmax.reinmax, 1.0),
    "ReinMax tau=1.3": _pathwise(pyro_reinmax.reinmax, 1.3),
    "ReinMax tau=1.5": _pathwise(pyro_reinmax.reinmax, 1.5),
    "reference reinmax tau=1": _reference,
    "ST": _pathwise(pyro_reinmax.straight_through, 1.0),
    "ST-Gumbel tau=0.5": _pathwise(pyro_reinmax.gumbel_straight_through, 0.5),
    "ST-Gumbel tau=1": _pathwise(pyro_reinmax.gumbel_straight_through, 1.0),
    "RLOO": _rloo,
}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=4, help="evaluations of f per estimate")
    parser.add_argument("--replicates", type=int, default=4000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "gradient_quality.json"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    results = []
    for name, logits, f in track(problems(), description="problems"):
        exact = exact_gradient(logits, f)
        rows = {
            e: statistics(estimate(logits, f, args.budget, args.replicates), exact)
            for e, estimate in ESTIMATORS.items()
        }
        results.append(
            {"problem": name, "exact_gradient_norm": exact.norm().item(), "estimators": rows}
        )
    console = Console(width=160)
    for entry in results:
        budget = f"{args.budget} evaluations per estimate, {args.replicates} estimates"
        table = Table(title=f"{entry['problem']}: {budget}")
        for column in [
            "estimator",
            "rel. bias",
            "(noise floor)",
            "rel. variance",
            "rel. MSE",
            "cosine",
        ]:
            table.add_column(column, justify="right")
        for estimator, s in entry["estimators"].items():
            table.add_row(
                estimator,
                f"{s['relative_bias']:.3f} ± {s['relative_bias_se']:.3f}",
                f"{s['bias_noise_floor']:.3f}",
                f"{s['relative_variance']:.3f}",
                f"{s['relative_mse']:.3f} ± {s['relative_mse_se']:.3f}",
                f"{s['cosine']:.3f} ± {s['cosine_se']:.3f}",
            )
        console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "budget": args.budget,
        "replicates": args.replicates,
        "batches_for_standard_errors": BATCHES,
    }
    args.out.write_text(json.dumps({"meta": meta, "problems": results}, indent=1))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
