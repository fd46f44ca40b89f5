"""Guides that follow the model against independent ones, on a sticky hidden Markov chain.

The model (``reinmax_examples.sticky_hmm_pyro``: 30 steps, 3 states, stay probability 0.95,
observation noise 2) has a chain for its posterior. Each method trains ``AutoReinMax`` from
uniform logits with Adam (lr 0.1), the same seeds for every method; the metric is the ELBO's gap
to the exact log evidence (nats, 2,000 particles of ``Trace_ELBO``, which takes every guide;
lower is better),
recorded against steps and wall-clock. Methods:

- ``mean-field``: independent sites under ``TraceLocalEnum_ELBO`` (its default estimator);
- ``structured-st`` / ``structured-reinmax`` / ``structured-gumbel-rao`` / ``structured-gst``:
  ``dependencies="model"`` under ``TraceLocalEnum_ELBO`` with that estimator (each site's guide
  descendants drawn again when it moves);
- ``structured-reinforce`` / ``mean-field-reinforce``: ``estimator="score_function"`` under
  ``TraceGraph_ELBO`` (REINFORCE with Pyro's baselines off);
- ``structured-rloo`` / ``mean-field-rloo``: the same under ``TraceRLOO_ELBO`` (4 particles a
  step, the leave-one-out baseline).

With ``--backend numpyro``: the same chain in NumPyro (``reinmax_examples.sticky_hmm_numpyro``,
written as Pyro's ``examples/hmm.py`` writes models; the same data), the jitted SVI step timed
after its compilation; the local-enum methods only.

    python benchmarks/structured_hmm.py                      # writes results/structured_hmm.json
    python benchmarks/structured_hmm.py --backend numpyro    # results/structured_hmm-numpyro.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
from pyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO
from rich.console import Console
from rich.table import Table

from pyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO, TraceRLOO_ELBO
from reinmax_examples.sticky_hmm_pyro import log_evidence, sticky_data, sticky_hmm

RESULTS = Path(__file__).parent / "results" / "structured_hmm.json"
METHODS = {
    "mean-field": (None, "auto", TraceLocalEnum_ELBO),
    "structured-st": ("model", "straight_through", TraceLocalEnum_ELBO),
    "structured-reinmax": ("model", "reinmax", TraceLocalEnum_ELBO),
    "structured-gumbel-rao": ("model", "gumbel_rao", TraceLocalEnum_ELBO),
    "structured-gst": ("model", "gapped_straight_through", TraceLocalEnum_ELBO),
    "structured-reinforce": ("model", "score_function", TraceGraph_ELBO),
    "mean-field-reinforce": (None, "score_function", TraceGraph_ELBO),
    "structured-rloo": ("model", "score_function", TraceRLOO_ELBO),
    "mean-field-rloo": (None, "score_function", TraceRLOO_ELBO),
}


def gap(guide, data, evidence: float) -> float:
    elbo = Trace_ELBO(num_particles=2000, vectorize_particles=True, max_plate_nesting=0)
    return evidence + elbo.loss(sticky_hmm, guide, data)


def run(method: str, seed: int, steps: int, every: int, data, evidence: float) -> dict:
    dependencies, estimator, elbo = METHODS[method]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = AutoReinMax(sticky_hmm, dependencies=dependencies, estimator=estimator)
    svi = SVI(sticky_hmm, guide, pyro.optim.Adam({"lr": 0.1}), elbo())
    curve, seconds = [], 0.0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        svi.step(data)
        seconds += time.perf_counter() - start
        if step % every == 0:
            curve.append({"step": step, "seconds": seconds, "gap": gap(guide, data, evidence)})
    return {"method": method, "seed": seed, "curve": curve}


def run_numpyro(method: str, seed: int, steps: int, every: int, data, evidence: float) -> dict:
    import jax
    import jax.numpy as jnp
    import numpyro

    from numpyro_reinmax.infer import AutoReinMax as NumPyroAutoReinMax
    from numpyro_reinmax.infer import TraceLocalEnum_ELBO as NumPyroLocalELBO
    from reinmax_examples.sticky_hmm_numpyro import sticky_hmm as numpyro_hmm

    dependencies, estimator, _ = METHODS[method]
    sequence = jnp.asarray(data.numpy())
    guide = NumPyroAutoReinMax(numpyro_hmm, dependencies=dependencies, estimator=estimator)
    svi = numpyro.infer.SVI(
        numpyro_hmm, guide, numpyro.optim.Adam(0.1), NumPyroLocalELBO(max_plate_nesting=0)
    )
    state = svi.init(jax.random.PRNGKey(seed), sequence)
    update = jax.jit(svi.update)
    estimate = NumPyroLocalELBO(num_particles=2000, max_plate_nesting=0)
    negative_elbo = jax.jit(lambda key, p: estimate.loss(key, p, numpyro_hmm, guide, sequence))
    jax.block_until_ready(update(state, sequence))  # compiled outside the timed steps
    curve, seconds = [], 0.0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        state, _ = update(state, sequence)
        jax.block_until_ready(state)
        seconds += time.perf_counter() - start
        if step % every == 0:
            params = svi.get_params(state)
            loss = negative_elbo(jax.random.PRNGKey(10**6 + step), params)
            curve.append({"step": step, "seconds": seconds, "gap": evidence + float(loss)})
    return {"method": method, "seed": seed, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=None)
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    numpyro_backend = args.backend == "numpyro"
    local = [m for m, (_, _, elbo) in METHODS.items() if elbo is TraceLocalEnum_ELBO]
    args.methods = args.methods or ",".join(local if numpyro_backend else METHODS)
    args.out = args.out or (
        RESULTS.with_name("structured_hmm-numpyro.json") if numpyro_backend else RESULTS
    )
    data = sticky_data()
    evidence = log_evidence(data)
    runner = run_numpyro if numpyro_backend else run
    runs = [
        runner(method, seed, args.steps, args.every, data, evidence)
        for seed in range(args.seeds)
        for method in args.methods.split(",")
    ]
    title = f"{args.backend}: gap to the log evidence ({evidence:.2f} nats), {args.seeds} seeds"
    table = Table(title=title)
    table.add_column("method")
    for point in runs[0]["curve"]:
        table.add_column(f"step {point['step']}", justify="right")
    table.add_column("s / step", justify="right")
    for method in args.methods.split(","):
        mine = [r["curve"] for r in runs if r["method"] == method]
        cells = []
        for i in range(len(mine[0])):
            gaps = sorted(curve[i]["gap"] for curve in mine)
            cells.append(f"{gaps[len(gaps) // 2]:.2f} [{gaps[0]:.2f}, {gaps[-1]:.2f}]")
        per_step = sum(c[-1]["seconds"] for c in mine) / (len(mine) * args.steps)
        table.add_row(method, *cells, f"{per_step:.3f}")
    Console(width=160).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "backend": args.backend,
        "evidence": evidence,
        "steps": args.steps,
        "seeds": args.seeds,
        "runs": runs,
    }
    args.out.write_text(json.dumps(summary, indent=2))
    plot(summary, args.out.with_suffix(".png"))


def plot(summary: dict, path: Path) -> None:
    """The gap to the log evidence against steps and against training seconds, each method's
    median over seeds (its range shaded), on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    methods = list(dict.fromkeys(run["method"] for run in summary["runs"]))
    for method in methods:
        curves = [run["curve"] for run in summary["runs"] if run["method"] == method]
        points = range(len(curves[0]))
        gaps = [sorted(max(c[i]["gap"], 1e-3) for c in curves) for i in points]
        median = [g[len(g) // 2] for g in gaps]
        for axis, key in zip(axes, ("step", "seconds"), strict=True):
            x = [sorted(c[i][key] for c in curves)[len(curves) // 2] for i in points]
            (line,) = axis.plot(x, median, marker="o", markersize=3, label=method)
            low, high = [g[0] for g in gaps], [g[-1] for g in gaps]
            axis.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
    axes[0].set(xlabel="SVI step", ylabel="gap to the log evidence (nats)", yscale="log")
    axes[1].set(xlabel="training seconds")
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{summary.get('backend', 'pyro')}: sticky HMM, {summary['seeds']} seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
