"""Training throughput against the number of processes (Pyro, DDP) or devices (NumPyro, sharding).

Each configuration is one ``reinmax-compare MODEL --methods reinmax`` run in a fresh process (so
that NumPyro's host devices and Pyro's process group are its own), with ``--processes N`` or
``--devices N``; the runs of one model and backend are interleaved over ``--rounds`` rounds, and
the table shows medians. Throughput: data points per second of training (evaluations and, for
NumPyro, compilation excluded): digits for the VAE (100 per step), tokens for LDA (the whole
training corpus per step). The metric of each run (seed 0) is kept beside it: it must not depend
on N beyond seed noise, which one more run on one process with ``--seeds 3`` measures.

    python benchmarks/data_parallel.py                  # 1 and 2, both backends, vae and lda
    python benchmarks/data_parallel.py --counts 1,2,4 --device cuda   # on a machine with GPUs
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

STEPS = {"vae": 300, "lda": 150}
OPTION = {"pyro": "--processes", "numpyro": "--devices"}
HEADER = [
    "model",
    "backend",
    "processes (pyro) / devices (numpyro)",
    "points/s",
    "against N = 1",
    "metric (seed 0)",
    "seeds 0, 1, 2 on one",
]
"""The table's columns, here and in docs/results.md (``docs/build.py``)."""


def table_rows(records: list[dict]) -> list[list[str]]:
    """The table's cells, one row per record of the results file."""
    return [
        [
            r["model"],
            r["backend"],
            str(r["count"]),
            f"{r['throughput']:,.0f}",
            f"{r['speedup']:.2f}x",
            f"{r['metric']:.3f}",
            ", ".join(f"{m:.3f}" for m in r["seed_metrics_one_process"]),
        ]
        for r in records
    ]


def points_per_step(model: str) -> int:
    if model == "vae":
        from reinmax_examples.vae_pyro import BATCH

        return BATCH
    from reinmax_examples.data import corpus

    return len(corpus("lee")[0].words)


def one_run(model: str, backend: str, count: int, steps: int, device: str, seeds: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        command = [sys.executable, "-m", "reinmax_examples.compare", model, "--backend", backend]
        command += ["--methods", "reinmax", "--steps", str(steps), "--checkpoints", "1"]
        command += [OPTION[backend], str(count), "--device", device, "--out", str(out)]
        command += ["--seeds", str(seeds)]
        subprocess.run(command, check=True, capture_output=True)
        result = json.loads((out / "results.json").read_text())["methods"]["reinmax"]
    return {
        "seconds": result["seconds"][-1],
        "metric": result["metric"],
        "seed_metrics": [run["metric"] for run in result["per_seed"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,2", help="processes / devices (default 1,2)")
    parser.add_argument("--models", default="vae,lda")
    parser.add_argument("--backends", default="pyro,numpyro")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    out = args.out or Path(__file__).parent / "results" / f"data_parallel-{args.device}.json"
    console = Console()
    records = []
    for model in args.models.split(","):
        points = points_per_step(model)
        for backend in args.backends.split(","):
            runs = {count: [] for count in counts}
            for round_ in range(args.rounds):
                for count in counts if round_ % 2 == 0 else counts[::-1]:
                    runs[count].append(one_run(model, backend, count, STEPS[model], args.device))
            spread = one_run(model, backend, 1, STEPS[model], args.device, seeds=3)["seed_metrics"]
            base = None
            for count in counts:
                seconds = statistics.median(r["seconds"] for r in runs[count])
                throughput = STEPS[model] * points / seconds
                base = base or throughput
                records.append(
                    {
                        "model": model,
                        "backend": backend,
                        "count": count,
                        "steps": STEPS[model],
                        "points_per_step": points,
                        "seconds": seconds,
                        "throughput": throughput,
                        "speedup": throughput / base,
                        "metric": statistics.median(r["metric"] for r in runs[count]),
                        "seed_metrics_one_process": spread,
                    }
                )
                console.print(
                    f"{model} {backend} x{count}: {throughput:,.0f} points/s "
                    f"({throughput / base:.2f}x)"
                )
    meta = {
        "device": args.device,
        "machine": platform.processor() or platform.machine(),
        "rounds": args.rounds,
        "command": "python benchmarks/data_parallel.py " + " ".join(sys.argv[1:]),
    }
    if args.device == "cuda":
        import torch

        meta["gpu"] = torch.cuda.get_device_name()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "records": records}, indent=1) + "\n")
    table = Table(title=f"Training throughput ({args.device}; medians of {args.rounds} runs)")
    for column in HEADER:
        table.add_column(column, justify="right")
    for row in table_rows(records):
        table.add_row(*row)
    console.print(table)
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
