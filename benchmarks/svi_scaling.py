"""The cost of one SVI step as the problem grows: ReinMax against exact enumeration and REINFORCE,
in Pyro and in NumPyro (the whole step under ``jax.jit``).

* Mixtures: N = 500 points in D dimensions, K components; one assignment per point
  (enumeration sums K terms per point: cheap, it grows like ReinMax).
* Coupled latents: M categorical latents of 4 categories per point feed one observation,
  x_n ~ Normal(sum_m W_m z_nm, 1): enumeration sums over the 4^M joint configurations per point,
  ReinMax samples M one-hot vectors. Each configuration runs in a fresh process so that its peak
  memory (max RSS) is its own. Enumeration stops (marked infeasible, with the reason) once a step
  exceeds ``--budget`` seconds, or once 4 times the last peak memory (one more latent) would
  exceed ``--memory-gb``.

Times are medians over ``--steps`` steps after warm-up (and, in NumPyro, after compilation).

    python benchmarks/svi_scaling.py                    # results/svi_scaling-pyro-cpu.json
    python benchmarks/svi_scaling.py --backend numpyro  # results/svi_scaling-numpyro-cpu.json
    python benchmarks/svi_scaling.py --device cuda      # on a GPU, where one is available
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

METHODS = ("reinmax", "enum", "reinforce")
MIXTURE_GRID = [(k, d) for k in (2, 8, 32, 128, 256) for d in (2, 16, 64)]
COUPLED = range(1, 11)
FAILED = "the step failed (out of memory or time)"
POINTS = 500


def measure_one(backend: str, kind: str, method: str, size: tuple, steps: int, device: str):
    """One configuration, in this process: median step time and peak memory. Only the backend
    measured is imported, so that the peak memory is its own."""
    module = importlib.import_module(f"scaling_{backend}")
    seconds = module.step_seconds(kind, method, size, POINTS, steps, device)
    peak = module.device_peak_gb(device)
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KB to GB
    return {"kind": kind, "method": method, "size": list(size), "seconds": seconds, "peak_gb": peak}


def in_fresh_process(kind, method, size, args) -> dict | None:
    command = [sys.executable, __file__, "--one", json.dumps([kind, method, list(size)])]
    command += ["--backend", args.backend, "--steps", str(args.steps), "--device", args.device]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.budget * (args.steps + 10) + 120
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None  # out of memory, most often
    return json.loads(done.stdout.strip().splitlines()[-1])


def enumeration_stop(m: int, record: dict | None, args) -> str | None:
    """Why enumeration is not run beyond M = ``m`` latents, or None: each further latent
    multiplies the joint configurations, hence time and memory, by 4."""
    if record is None:
        return f"M = {m}: {FAILED}"
    if record["seconds"] > args.budget:
        return f"M = {m} took {record['seconds']:.1f} s per step (budget {args.budget:g} s)"
    if 4 * record["peak_gb"] > args.memory_gb:
        return (
            f"M = {m} peaked at {record['peak_gb']:.1f} GB; 4 times that exceeds "
            f"{args.memory_gb:g} GB"
        )
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="pyro", choices=["pyro", "numpyro"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--budget", type=float, default=5.0, help="seconds per step beyond which enumeration stops"
    )
    parser.add_argument("--memory-gb", type=float, default=8.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.one:
        kind, method, size = json.loads(args.one)
        record = measure_one(args.backend, kind, method, tuple(size), args.steps, args.device)
        print(json.dumps(record))
        return
    console = Console(width=160)
    if args.device == "cuda" and not importlib.import_module(f"scaling_{args.backend}").has_cuda():
        raise SystemExit(
            "--device cuda: no CUDA device is available; the GPU rows were not measured."
        )
    records = []
    for k, d in MIXTURE_GRID:
        for method in METHODS:
            records.append(
                in_fresh_process("mixture", method, (k, d), args)
                or {"kind": "mixture", "method": method, "size": [k, d], "infeasible": FAILED}
            )
    stopped = None  # why enumeration is not run at larger M
    for m in COUPLED:
        for method in METHODS:
            if method == "enum" and stopped:
                records.append(
                    {"kind": "coupled", "method": method, "size": [m], "infeasible": stopped}
                )
                continue
            record = in_fresh_process("coupled", method, (m,), args)
            if method == "enum":
                stopped = enumeration_stop(m, record, args)
            records.append(
                record or {"kind": "coupled", "method": method, "size": [m], "infeasible": FAILED}
            )
    for kind, title, label in [
        ("mixture", f"Mixtures, {POINTS} points: ms per SVI step (peak GB)", "K x D"),
        (
            "coupled",
            f"M coupled latents of 4 categories, {POINTS} points: ms per SVI step (peak GB)",
            "M (4^M)",
        ),
    ]:
        table = Table(title=f"{args.backend}: {title} on {args.device}")
        table.add_column(label, justify="right")
        for method in METHODS:
            table.add_column(method, justify="right")
        sizes = list(dict.fromkeys(tuple(r["size"]) for r in records if r["kind"] == kind))
        for size in sizes:
            cells = []
            for method in METHODS:
                r = next(
                    r
                    for r in records
                    if r["kind"] == kind and tuple(r["size"]) == size and r["method"] == method
                )
                cells.append(
                    "infeasible"
                    if r.get("infeasible")
                    else f"{r['seconds'] * 1e3:.1f} ({r['peak_gb']:.2f})"
                )
            name = (
                f"{size[0]} x {size[1]}" if kind == "mixture" else f"{size[0]} ({4 ** size[0]:,})"
            )
            table.add_row(name, *cells)
        console.print(table)
    out = (
        args.out
        or Path(__file__).parent / "results" / f"svi_scaling-{args.backend}-{args.device}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "backend": args.backend,
        "device": args.device,
        "steps": args.steps,
        "budget_seconds": args.budget,
        "memory_gb": args.memory_gb,
        "points": POINTS,
    }
    out.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
