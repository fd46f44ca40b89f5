"""The paper's polynomial programming experiment, reproduced (Liu et al. 2023, section 6.1).

Minimise E[ mean_i |z_i - 0.45|^p ] over 128 independent binary variables z_i ~ Bernoulli, the
parameters being the logits of each variable's two categories: batch 64 samples per step, 8,000
steps, Adam at learning rate 1e-3, temperature 1, 10 seeds, p in {1.5, 2, 3}. The best possible
loss is 0.45^p (every z_i = 0). The loss reported is the exact expected loss under the current
parameters, E|z - 0.45|^p = q_0 0.45^p + q_1 0.55^p per variable, averaged over variables.

Estimators: ReinMax, straight-through (ST), ST Gumbel-softmax, gapped straight-through (GST-1.0),
Gumbel-Rao (GR-MCK, 10 conditional draws), ReinMax-Rao and ReinMax-CV (package defaults), and
REINFORCE with the leave-one-out baseline over the batch (RLOO), all at the experiment's
temperature. All 10 seeds train at once (independent parameters, one batch).

    python benchmarks/polynomial.py        # writes results/polynomial.json and polynomial.png
    python benchmarks/polynomial.py --estimators GST-1.0 --merge   # add runs to that file
"""

from __future__ import annotations

import argparse
import json
import statistics
from functools import partial
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

import pyro_reinmax

VARIABLES, BATCH, TARGET = 128, 64, 0.45
SETTINGS = ("steps", "seeds", "lr", "temperature")  # what a results file records and must match
ESTIMATORS = {
    "ReinMax": pyro_reinmax.reinmax,
    "ST": pyro_reinmax.straight_through,
    "ST-Gumbel": pyro_reinmax.gumbel_straight_through,
    "GST-1.0": partial(pyro_reinmax.gapped_straight_through, gap=1.0),
    "GR-MCK": partial(pyro_reinmax.gumbel_rao, samples=10),
    "ReinMax-Rao": pyro_reinmax.reinmax_rao,
    "ReinMax-CV": pyro_reinmax.reinmax_cv,
    "RLOO": None,
}


def expected_loss(logits: torch.Tensor, p: float) -> torch.Tensor:
    """The exact expected loss per seed: mean_i q_i0 0.45^p + q_i1 0.55^p."""
    q = logits.softmax(-1)
    return (q[..., 0] * TARGET**p + q[..., 1] * (1 - TARGET) ** p).mean(-1)


def surrogate(name: str, logits: torch.Tensor, p: float, temperature: float) -> torch.Tensor:
    """A loss whose gradient is the estimator's, for every seed (logits: seeds x variables x 2)."""
    batched = logits.unsqueeze(1).expand(-1, BATCH, -1, -1)
    if name == "RLOO":
        with torch.no_grad():
            probs = batched.softmax(-1)
            sample = pyro_reinmax.sampling.draw_one_hot(probs)
            cost = (sample[..., 1] - TARGET).abs().pow(p).mean(-1)  # seeds x batch
            baseline = (cost.sum(1, keepdim=True) - cost) / (BATCH - 1)
        log_q = (sample * batched.log_softmax(-1)).sum((-2, -1))
        return ((cost - baseline) * log_q).mean(1).sum()
    sample, _ = ESTIMATORS[name](batched, temperature)
    return (sample[..., 1] - TARGET).abs().pow(p).mean(-1).mean(1).sum()


def run(name: str, p: float, seeds: int, steps: int, lr: float, temperature: float, record: int):
    torch.manual_seed(0)
    logits = (torch.rand(seeds, VARIABLES, 2) * 0.02 - 0.01).requires_grad_()  # the paper's start
    optimizer = torch.optim.Adam([logits], lr=lr)
    curve = []
    for step in range(steps):
        optimizer.zero_grad()
        surrogate(name, logits, p, temperature).backward()
        optimizer.step()
        if (step + 1) % record == 0:
            curve.append(expected_loss(logits.detach(), p).tolist())
    return curve  # records x seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--estimators", default=",".join(ESTIMATORS), type=lambda s: s.split(","), help="subset"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "polynomial.json"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the runs already in --out (same settings) that this command does not redo",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.estimators) - set(ESTIMATORS))
    if unknown:
        parser.error(f"unknown estimator(s) {unknown}; choose from {', '.join(ESTIMATORS)}")
    record = max(1, args.steps // 100)
    config = {key: args_value for key, args_value in vars(args).items() if key in SETTINGS}
    results = {"config": config, "runs": []}
    jobs = [(p, name) for p in (1.5, 2.0, 3.0) for name in args.estimators]
    if args.merge and args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous["config"] != config:
            raise SystemExit(
                f"--merge: {args.out} was made with {previous['config']}, this command runs "
                f"{config}. Use another --out."
            )
        results["runs"] = [r for r in previous["runs"] if (r["p"], r["estimator"]) not in jobs]
    for p, name in track(jobs, description="training"):
        curve = run(name, p, args.seeds, args.steps, args.lr, args.temperature, record)
        final = curve[-1]
        results["runs"].append(
            {
                "p": p,
                "estimator": name,
                "optimum": TARGET**p,
                "step": [record * (i + 1) for i in range(len(curve))],
                "loss": curve,
                "final_mean": statistics.fmean(final),
                "final_std": statistics.stdev(final) if len(final) > 1 else 0.0,
            }
        )
    table = Table(
        title=f"Polynomial programming: final expected loss ± sd over {args.seeds} seeds, "
        f"{args.steps} steps"
    )
    results["runs"].sort(key=lambda r: (r["p"], list(ESTIMATORS).index(r["estimator"])))
    estimators = [e for e in ESTIMATORS if any(r["estimator"] == e for r in results["runs"])]
    for column in ["p", "optimum 0.45^p", *estimators]:
        table.add_column(column, justify="right")
    for p in (1.5, 2.0, 3.0):
        runs = {r["estimator"]: r for r in results["runs"] if r["p"] == p}
        cells = [f"{runs[e]['final_mean']:.4f} ± {runs[e]['final_std']:.1e}" for e in estimators]
        table.add_row(str(p), f"{TARGET**p:.4f}", *cells)
    Console(width=160).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, p in zip(axes, (1.5, 2.0, 3.0), strict=True):
        for run in (r for r in results["runs"] if r["p"] == p):
            mean = [statistics.fmean(v) for v in run["loss"]]
            axis.plot(run["step"], mean, label=run["estimator"])
        axis.axhline(0.45**p, color="black", linestyle=":", label="optimum")
        axis.set(title=f"p = {p}", xlabel="step", ylabel="expected loss (mean of seeds)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
