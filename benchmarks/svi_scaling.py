"""The cost of one SVI step as the problem grows: ReinMax against exact enumeration and REINFORCE
(Pyro).

* Mixtures: N = 500 points in D dimensions, K components; one assignment per point
  (enumeration sums K terms per point: cheap, it grows like ReinMax).
* Coupled latents: M categorical latents of 4 categories per point feed one observation,
  x_n ~ Normal(sum_m W_m z_nm, 1): enumeration sums over the 4^M joint configurations per point,
  ReinMax samples M one-hot vectors. Each configuration runs in a fresh process so that its peak
  memory (max RSS) is its own; enumeration stops once a step exceeds ``--budget`` seconds or the
  memory ``--memory-gb`` (it is marked infeasible there).

Times are medians over ``--steps`` steps after warm-up.

    python benchmarks/svi_scaling.py                 # writes results/svi_scaling-cpu.json
    python benchmarks/svi_scaling.py --device cuda   # the same on a GPU, where one is available
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate
from pyro.optim import Adam
from rich.console import Console
from rich.table import Table

import pyro_reinmax as pr
from pyro_reinmax.infer import AutoReinMax, TraceMeanField_ELBO

METHODS = ("reinmax", "enum", "reinforce")
MIXTURE_GRID = [(k, d) for k in (2, 8, 32, 128, 256) for d in (2, 16, 64)]
COUPLED = range(1, 10)
POINTS = 500


def mixture(x, num_components: int):
    locs = pyro.param("locs", torch.randn(num_components, x.shape[-1], device=x.device))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pr.OneHotCategorical(logits=x.new_zeros(num_components)))
        pyro.sample("x", pr.OneHotMixture(z, dist.Normal(locs, 1.0).to_event(1)), obs=x)


def coupled(x, num_latents: int):
    weights = pyro.param("weights", torch.randn(num_latents, 4, x.shape[-1], device=x.device))
    with pyro.plate("data", x.shape[0]):
        mean = 0.0
        for m in range(num_latents):
            z = pyro.sample(f"z{m}", pr.OneHotCategorical(logits=x.new_zeros(4)))
            mean = mean + z @ weights[m]
        pyro.sample("x", dist.Normal(mean, 1.0).to_event(1), obs=x)


def step_seconds(model, method: str, arguments, steps: int, device: str) -> float:
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    if method == "enum":
        model, guide = config_enumerate(model), (lambda *_: None)
        loss = TraceEnum_ELBO(max_plate_nesting=1)
    else:
        estimator = "reinmax" if method == "reinmax" else "score_function"
        guide = AutoReinMax(model, estimator=estimator)
        loss = TraceMeanField_ELBO() if method == "reinmax" else TraceGraph_ELBO()
    svi = SVI(model, guide, Adam({"lr": 0.01}), loss)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        svi.step(*arguments)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        svi.step(*arguments)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_one(kind: str, method: str, size: tuple, steps: int, device: str) -> dict:
    """One configuration, in this process: median step time and peak memory."""
    torch.manual_seed(0)
    if kind == "mixture":
        k, d = size
        x = torch.randn(POINTS, d, device=device)
        seconds = step_seconds(mixture, method, (x, k), steps, device)
    else:
        (m,) = size
        x = torch.randn(POINTS, 8, device=device)
        seconds = step_seconds(coupled, method, (x, m), steps, device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GB (ru_maxrss is in KB)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    return {"kind": kind, "method": method, "size": list(size), "seconds": seconds, "peak_gb": peak}


def in_fresh_process(kind, method, size, args) -> dict | None:
    command = [sys.executable, __file__, "--one", json.dumps([kind, method, list(size)])]
    command += ["--steps", str(args.steps), "--device", args.device]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.budget * (args.steps + 10) + 120
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None  # out of memory, most often
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        print(json.dumps(measure_one(kind, method, tuple(size), args.steps, args.device)))
        return
    console = Console(width=160)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda: no CUDA device is available; the GPU rows were not measured."
        )
    records = []
    for k, d in MIXTURE_GRID:
        for method in METHODS:
            records.append(
                in_fresh_process("mixture", method, (k, d), args)
                or {"kind": "mixture", "method": method, "size": [k, d], "infeasible": True}
            )
    enumeration_feasible = True
    for m in COUPLED:
        for method in METHODS:
            if method == "enum" and not enumeration_feasible:
                records.append(
                    {"kind": "coupled", "method": method, "size": [m], "infeasible": True}
                )
                continue
            record = in_fresh_process("coupled", method, (m,), args)
            if method == "enum" and (
                record is None
                or record["seconds"] > args.budget
                or record["peak_gb"] > args.memory_gb
            ):
                enumeration_feasible = False  # 4^(M+1) configurations would only cost more
            records.append(
                record or {"kind": "coupled", "method": method, "size": [m], "infeasible": True}
            )
    for kind, title, label in [
        ("mixture", f"Mixtures, {POINTS} points: ms per SVI step (peak GB)", "K x D"),
        (
            "coupled",
            f"M coupled latents of 4 categories, {POINTS} points: ms per SVI step (peak GB)",
            "M (4^M)",
        ),
    ]:
        table = Table(title=f"{title} on {args.device}")
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
    out = args.out or Path(__file__).parent / "results" / f"svi_scaling-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
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
