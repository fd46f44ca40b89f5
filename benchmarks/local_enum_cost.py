"""The cost of one SVI step with TraceLocalEnum_ELBO against TraceMeanField_ELBO, both backends.

The methods ``reinmax`` (TraceMeanField_ELBO) and ``reinmax-local`` (TraceLocalEnum_ELBO) of
``reinmax-compare`` fit the same model with the same ReinMax guide (``AutoReinMax``), so their
ratio is the price of linearising every factor. Models: ``gmm`` (iris, 3 components) and ``lda``
(the Lee corpus, 8 topics). Each round fits both methods for ``--steps`` steps in a shuffled order
(after a warm-up fit of each; timing starts after set-up and, in NumPyro, after compilation); a
method's cost is its median seconds per step over the rounds.

    python benchmarks/local_enum_cost.py      # writes results/local_enum_cost-cpu.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reinmax_examples.compare import _load, parser

METHODS = ("reinmax", "reinmax-local")
MODELS = ("gmm", "lda")
BACKENDS = ("pyro", "numpyro")


def seconds_per_step(model: str, backend: str, method: str, steps: int) -> float:
    module = _load(model, backend)
    config = module.configure(parser().parse_args([model, "--steps", str(steps)]))
    problem = module.Problem(config, seed=0, device="cpu")
    timings = []
    module.fit(problem, method, seed=0, config=config, on_step=lambda *r: timings.append(r))
    step, _, seconds = timings[-1]
    return seconds / step


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("--steps", type=int, default=60)
    arguments.add_argument("--rounds", type=int, default=5)
    arguments.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "local_enum_cost-cpu.json"
    )
    args = arguments.parse_args()
    rng = random.Random(0)
    rows = []
    for model in MODELS:
        for backend in BACKENDS:
            samples: dict[str, list[float]] = {m: [] for m in METHODS}
            for method in METHODS:  # warm-up: one-time imports and caches
                seconds_per_step(model, backend, method, 2)
            for _ in range(args.rounds):
                for method in rng.sample(METHODS, len(METHODS)):
                    samples[method].append(seconds_per_step(model, backend, method, args.steps))
            medians = {m: statistics.median(v) for m, v in samples.items()}
            rows.append(
                {
                    "model": model,
                    "backend": backend,
                    "ms_per_step": {m: 1000 * s for m, s in medians.items()},
                    "ratio": medians["reinmax-local"] / medians["reinmax"],
                }
            )
    table = Table(title=f"ms per SVI step, median of {args.rounds} interleaved rounds")
    for column in ["model", "backend", "TraceMeanField_ELBO", "TraceLocalEnum_ELBO", "ratio"]:
        table.add_column(column, justify="right")
    for row in rows:
        ms = row["ms_per_step"]
        table.add_row(
            row["model"],
            row["backend"],
            f"{ms['reinmax']:.2f}",
            f"{ms['reinmax-local']:.2f}",
            f"{row['ratio']:.2f}",
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"steps": args.steps, "rounds": args.rounds, "rows": rows}, indent=1)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
