"""The memory a structured guide's step asks for, on the factorial HMM (NumPyro).

``reinmax-compare fhmm --backend numpyro --chains 6 --methods structured`` (every site depending
on the chains at its step and the step before) ran out of memory on a 24 GB machine with the
structured guide's tables formed as a broadcast product (one copy of every table per element of
the local ELBO's perturbation dimension). This script compiles one loss-and-gradient of
``TraceLocalEnum_ELBO`` for that guide and model (``reinmax_examples.fhmm_numpyro``, its training
sequences and shared start) and prints XLA's own account of the program's temporary memory
(``memory_analysis``), for a grid of chains and time steps; nothing runs but the compilation.

    python benchmarks/structured_memory.py       # writes results/structured_memory-numpyro.json
    python benchmarks/structured_memory.py --grid 3x6,6x6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpyro
from numpyro.infer import SVI
from rich.console import Console
from rich.table import Table

from numpyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO
from reinmax_examples.factorial_hmm import sequences, start
from reinmax_examples.fhmm_numpyro import model

RESULTS = Path(__file__).parent / "results" / "structured_memory-numpyro.json"
GRID = ((3, 6), (3, 20), (6, 6), (6, 20))
"""(chains, time steps) of each row."""


def temporary_memory(chains: int, length: int) -> dict:
    """XLA's temporary and argument bytes for one jitted loss-and-gradient, and the compile time."""
    train, _ = sequences(chains, length)
    x = jnp.asarray(train)
    shared = {k: jnp.asarray(v) for k, v in vars(start(chains, 0)).items()}
    guide = AutoReinMax(model, dependencies="model")
    elbo = TraceLocalEnum_ELBO()
    svi = SVI(model, guide, numpyro.optim.Adam(0.01), elbo)
    params = svi.get_params(svi.init(jax.random.PRNGKey(0), x, shared))

    def loss(p: dict) -> jax.Array:
        return elbo.loss(jax.random.PRNGKey(1), p, model, guide, x, shared)

    began = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
    seconds = time.perf_counter() - began
    analysis = compiled.memory_analysis()
    return {
        "chains": chains,
        "length": length,
        "sites": chains * length,
        "temporary_gb": analysis.temp_size_in_bytes / 1e9,
        "argument_mb": analysis.argument_size_in_bytes / 1e6,
        "compile_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", help="comma-separated CHAINSxSTEPS (default: 3x6,3x20,6x6,6x20)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    grid = GRID
    if args.grid:
        grid = tuple(tuple(int(n) for n in cell.split("x")) for cell in args.grid.split(","))
    rows = [temporary_memory(chains, length) for chains, length in grid]
    table = Table(title="structured guide, factorial HMM (NumPyro): one loss-and-gradient")
    for column in ("chains", "steps", "sites", "XLA temporary (GB)", "compile (s)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["chains"]),
            str(row["length"]),
            str(row["sites"]),
            f"{row['temporary_gb']:.3f}",
            f"{row['compile_seconds']:.0f}",
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "device": str(jax.devices()[0])}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
