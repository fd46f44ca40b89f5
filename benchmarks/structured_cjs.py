"""Structured against independent guides on an absorbing chain: Pyro's capture-recapture
``model_1`` as written (``reinmax_examples.cjs_pyro``), survival and recapture probabilities
fitted as point estimates (``AutoDelta``).

Methods, each from the same start with Adam (``--lr``): ``enum`` (every state summed out,
``TraceEnum_ELBO``), ``mean-field`` and ``structured`` (``AutoReinMax(continuous_guide=AutoDelta,
dependencies=None | "model")`` under ``TraceLocalEnum_ELBO``), and the same two guides with
``estimator="score_function"`` under REINFORCE (``TraceGraph_ELBO``, no baselines:
``*-reinforce``) and under ``TraceRLOO_ELBO`` (4 particles a step, the leave-one-out baseline:
``*-rloo``). Reported: each method's final
-ELBO (exact for ``enum``; 1,000 particles of ``Trace_ELBO`` for the sampled guides), its gap to
``enum``'s (nats, lower is better), the fitted probabilities and the seconds per step.

With ``--backend numpyro``: the same model and data in NumPyro (``reinmax_examples.cjs_numpyro``,
written as a Pyro user ports it), the jitted step timed after its compilation.

    python benchmarks/structured_cjs.py                      # writes results/structured_cjs.json
    python benchmarks/structured_cjs.py --backend numpyro    # results/structured_cjs-numpyro.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO
from pyro.infer.autoguide import AutoDelta
from rich.console import Console
from rich.table import Table

from pyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO, TraceRLOO_ELBO
from reinmax_examples.cjs_pyro import capture_history, model_1

RESULTS = Path(__file__).parent / "results" / "structured_cjs.json"
METHODS = {
    "enum": (None, None, "enum"),
    "mean-field": (None, "auto", "local"),
    "structured": ("model", "auto", "local"),
    "mean-field-reinforce": (None, "score_function", "reinforce"),
    "structured-reinforce": ("model", "score_function", "reinforce"),
    "mean-field-rloo": (None, "score_function", "rloo"),
    "structured-rloo": ("model", "score_function", "rloo"),
}
"""Each method's guide dependencies, estimator and ELBO."""
RLOO_PARTICLES = 4


def run(method: str, history, steps: int, lr: float, seed: int) -> dict:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    occasions = history.shape[1]
    dependencies, estimator, loss_kind = METHODS[method]
    if loss_kind == "enum":
        guide = AutoDelta(poutine.block(model_1, hide=[f"z_{t}" for t in range(occasions)]))
    else:
        guide = AutoReinMax(
            model_1, estimator=estimator, continuous_guide=AutoDelta, dependencies=dependencies
        )
    elbo = {
        "enum": lambda: TraceEnum_ELBO(max_plate_nesting=1),
        "local": lambda: TraceLocalEnum_ELBO(max_plate_nesting=1),
        "reinforce": lambda: TraceGraph_ELBO(max_plate_nesting=1),
        "rloo": lambda: TraceRLOO_ELBO(num_particles=RLOO_PARTICLES, max_plate_nesting=1),
    }[loss_kind]()
    svi = SVI(model_1, guide, pyro.optim.Adam({"lr": lr}), elbo)
    start = time.perf_counter()
    for _ in range(steps):
        svi.step(history)
    seconds = time.perf_counter() - start
    if method == "enum":
        loss = elbo.loss(model_1, guide, history)
    else:
        estimate = Trace_ELBO(num_particles=1000, vectorize_particles=True, max_plate_nesting=1)
        loss = estimate.loss(model_1, guide, history)
    point = {
        name.split(".")[-1]: float(value.detach())
        for name, value in pyro.get_param_store().items()
        if name.endswith(("phi", "rho"))
    }
    return {
        "method": method,
        "seed": seed,
        "loss": loss,
        "estimates": point,
        "seconds_per_step": seconds / steps,
    }


def run_numpyro(method: str, history, steps: int, lr: float, seed: int) -> dict:
    import jax
    import numpyro
    from numpyro.infer import Trace_ELBO as NumPyroTrace_ELBO
    from numpyro.infer import TraceEnum_ELBO as NumPyroTraceEnum_ELBO
    from numpyro.infer import TraceGraph_ELBO as NumPyroTraceGraph_ELBO
    from numpyro.infer.autoguide import AutoDelta as NumPyroAutoDelta

    from numpyro_reinmax.infer import AutoReinMax as NumPyroAutoReinMax
    from numpyro_reinmax.infer import TraceLocalEnum_ELBO as NumPyroLocalELBO
    from numpyro_reinmax.infer import TraceRLOO_ELBO as NumPyroRLOO_ELBO
    from reinmax_examples.cjs_numpyro import model_1 as numpyro_model

    history = jax.numpy.asarray(history.numpy())
    occasions = history.shape[1]
    dependencies, estimator, loss_kind = METHODS[method]
    if loss_kind == "enum":
        hidden = [f"z_{t}" for t in range(occasions)]
        guide = NumPyroAutoDelta(numpyro.handlers.block(numpyro_model, hide=hidden))
    else:
        guide = NumPyroAutoReinMax(
            numpyro_model,
            estimator=estimator,
            continuous_guide=NumPyroAutoDelta,
            dependencies=dependencies,
        )
    elbo = {
        "enum": lambda: NumPyroTraceEnum_ELBO(max_plate_nesting=1),
        "local": lambda: NumPyroLocalELBO(max_plate_nesting=1),
        "reinforce": lambda: NumPyroTraceGraph_ELBO(),
        "rloo": lambda: NumPyroRLOO_ELBO(num_particles=RLOO_PARTICLES),
    }[loss_kind]()
    svi = numpyro.infer.SVI(numpyro_model, guide, numpyro.optim.Adam(lr), elbo)
    state = svi.init(jax.random.PRNGKey(seed), history)
    update = jax.jit(svi.update)
    jax.block_until_ready(update(state, history))  # compiled outside the timed steps
    start = time.perf_counter()
    for _ in range(steps):
        state, _ = update(state, history)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    params = svi.get_params(state)
    key = jax.random.PRNGKey(10**6 + seed)
    if method == "enum":
        loss = float(elbo.loss(key, params, numpyro_model, guide, history))
    else:
        estimate = NumPyroTrace_ELBO(num_particles=1000)
        loss = float(estimate.loss(key, params, numpyro_model, guide, history))
    point = guide.median(params)
    return {
        "method": method,
        "seed": seed,
        "loss": loss,
        "estimates": {name: float(point[name]) for name in ("phi", "rho") if name in point},
        "seconds_per_step": seconds / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="pyro")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}"
    )
    args = parser.parse_args()
    args.out = args.out or (
        RESULTS.with_name("structured_cjs-numpyro.json") if args.backend == "numpyro" else RESULTS
    )
    history = capture_history()
    runner = run_numpyro if args.backend == "numpyro" else run
    runs = [
        runner(method, history, args.steps, args.lr, seed)
        for seed in range(args.seeds)
        for method in args.methods.split(",")
    ]
    title = f"{args.backend}: capture-recapture model_1, {args.steps} steps, lr {args.lr}"
    table = Table(title=title)
    for column in ("method", "seed", "-ELBO", "gap to enum", "phi", "rho", "s / step"):
        table.add_column(column, justify="right")
    for record in runs:
        enum = next(r for r in runs if r["method"] == "enum" and r["seed"] == record["seed"])
        record["gap"] = record["loss"] - enum["loss"]
        table.add_row(
            record["method"],
            str(record["seed"]),
            f"{record['loss']:.2f}",
            f"{record['gap']:.2f}",
            f"{record['estimates'].get('phi', float('nan')):.3f}",
            f"{record['estimates'].get('rho', float('nan')):.3f}",
            f"{record['seconds_per_step']:.3f}",
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "backend": args.backend,
        "steps": args.steps,
        "lr": args.lr,
        "seeds": args.seeds,
        "runs": runs,
    }
    args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
