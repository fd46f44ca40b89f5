"""What the C kernels buy in a whole SVI step: every ``reinmax-compare`` model, both backends,
with the kernels on and off, interleaved in one run.

Each round fits the model from the same start for ``--steps`` steps, once with the kernels and
once without (alternating which goes first), and keeps the seconds per step after the first
recorded point (NumPyro's compilation and Pyro's first-step set-up excluded). The table gives the
median over rounds and the ratio off / on (above 1: the kernels pay). Methods: ``reinmax`` (the
mean-field guide under ``TraceMeanField_ELBO``) and ``st-local`` (straight-through under
``TraceLocalEnum_ELBO``), the paths users take; NumPyro's steps run under ``jit`` (its plain-``jit``
path is the "off" column).

    python benchmarks/svi_kernels.py                  # results/svi_kernels-cpu.json
    python benchmarks/svi_kernels.py --models gmm vae --rounds 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

MODELS = ("gmm", "lda", "vae", "fhmm", "sbn", "regimes")
METHODS = ("reinmax", "st-local")
BACKENDS = ("pyro", "numpyro")
STEPS = {"gmm": 60, "lda": 40, "vae": 60, "fhmm": 40, "sbn": 60, "regimes": 10}
RESULTS = Path(__file__).with_name("results") / "svi_kernels-cpu.json"


def seconds_per_step(backend: str, model: str, method: str, steps: int, kernels: bool) -> float:
    """One fit, in this process, from seed 0: seconds per step after the first recorded point."""
    from reinmax_examples import compare

    package = __import__(f"{backend}_reinmax")
    package.set_native_kernels(kernels)
    args = compare.parser().parse_args([model, "--backend", backend, "--steps", str(steps)])
    module = compare._load(model, backend)
    config = module.configure(args)
    problem = module.Problem(config, seed=0, device="cpu")
    points: list[tuple[int, float]] = []
    module.fit(
        problem,
        method,
        seed=0,
        config=config,
        on_step=lambda step, _elbo, seconds: points.append((step, seconds)),
    )
    (first_step, first_seconds), (last_step, last_seconds) = points[0], points[-1]
    return (last_seconds - first_seconds) / (last_step - first_step)


def in_fresh_process(backend, model, method, steps, kernels) -> float | None:
    """:func:`seconds_per_step` in a fresh process (each backend alone, no jit cache shared)."""
    command = [sys.executable, __file__, "--one", json.dumps([backend, model, method, steps])]
    command += ["--kernels", "on" if kernels else "off"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        print(f"{backend} {model} {method} failed: {lines[-1] if lines else done.returncode}")
        return None
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--rounds", type=int, default=3, help="interleaved on/off rounds (3)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies each model's steps")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--kernels", choices=["on", "off"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        backend, model, method, steps = json.loads(args.one)
        print(seconds_per_step(backend, model, method, steps, args.kernels == "on"))
        return
    rows = []
    for backend in args.backends:
        for model in args.models:
            for method in args.methods:
                if model == "regimes" and method == "reinmax":
                    continue  # integer sites: reinmax-compare runs regimes under local ELBOs
                steps = max(3, round(STEPS[model] * args.scale))
                times = {True: [], False: []}
                for round_ in range(args.rounds):
                    for kernels in (True, False) if round_ % 2 == 0 else (False, True):
                        seconds = in_fresh_process(backend, model, method, steps, kernels)
                        if seconds is not None:
                            times[kernels].append(seconds)
                if not times[True] or not times[False]:
                    continue
                on, off = statistics.median(times[True]), statistics.median(times[False])
                rows.append(
                    {
                        "backend": backend,
                        "model": model,
                        "method": method,
                        "steps": steps,
                        "on_ms": 1e3 * on,
                        "off_ms": 1e3 * off,
                        "off_over_on": off / on,
                        "rounds_on_ms": [1e3 * t for t in times[True]],
                        "rounds_off_ms": [1e3 * t for t in times[False]],
                    }
                )
                print(rows[-1])
    table = Table(title="SVI step, kernels on and off (medians of interleaved fits)")
    for column in ("backend", "model", "method", "on (ms)", "off (ms)", "off / on"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["backend"],
            r["model"],
            r["method"],
            f"{r['on_ms']:.2f}",
            f"{r['off_ms']:.2f}",
            f"{r['off_over_on']:.2f}",
        )
    Console().print(table)
    meta = {
        "machine": platform.machine(),
        "rounds": args.rounds,
        "command": "python " + " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
