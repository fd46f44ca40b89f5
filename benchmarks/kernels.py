"""Cost per entry of each CPU kernel (``reinmax_kernels/kernels.c``), one thread and all threads.

The kernels are what the estimators' fast paths are made of: the categorical draw and the backward
of one anchor term (ReinMax's, at temperature 1.3, and GR-MCK's conditional Gumbel anchor with one
draw, at 1.3 and at 1). ``speed.py`` times whole estimators; this says which kernel a rule's extra
time comes from, and shows a kernel that runs far slower per entry at some sizes than at others.
Each is called through ``pyro_reinmax.native`` on float32 and float64 arrays, medians of
interleaved rounds (``timing.py``).

    python benchmarks/kernels.py     # prints the table, writes results/kernels-cpu.json
"""

from __future__ import annotations

import os

os.environ.setdefault("REINMAX_NATIVE", "1")  # the kernels are opt-in: measure them here

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from pyro_reinmax import native
from pyro_reinmax.estimators import RULES, anchor_terms
from pyro_reinmax.sampling import draw_exponentials
from timing import interleaved_medians

SIZES = [(8192, 2), (64, 64), (8192, 64), (1024, 1024), (64, 32768)]
TEMPERATURE = 1.3


def kernel_calls(rows: int, categories: int, dtype: torch.dtype) -> dict[str, Callable]:
    """Each kernel on ``rows x categories`` arrays, as the estimators call it."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, categories, dtype=dtype, generator=generator)
    g = torch.randn(rows, categories, dtype=dtype, generator=generator)
    probs = logits.softmax(-1)
    uniforms = torch.rand(rows, 1, dtype=torch.float64, generator=generator)
    index, _ = native.draw_index(probs, uniforms)
    noise = draw_exponentials(logits.unsqueeze(0))

    def backward(rule_name: str, temperature: float) -> Callable:
        rule = RULES[rule_name]
        terms = anchor_terms(rule, rule.options, logits, noise, index, probs, temperature)
        return lambda: native.combine(terms, probs, index, g, None, rule.probs_scale)

    return {
        "draw": lambda: native.draw_index(probs, uniforms),
        "backward, reinmax": backward("reinmax", TEMPERATURE),
        "backward, GR-MCK": backward("gumbel_rao", TEMPERATURE),
        "backward, GR-MCK tau 1": backward("gumbel_rao", 1.0),
    }


def measure(threads: list[int], rounds: int) -> list[dict]:
    records = []
    jobs = [
        (dtype, size, count)
        for dtype in (torch.float32, torch.float64)
        for size in SIZES
        for count in threads
    ]
    for dtype, (rows, categories), count in track(jobs, description="timing"):
        torch.set_num_threads(count)
        timings = interleaved_medians(kernel_calls(rows, categories, dtype), rounds)
        for kernel, timing in timings.items():
            records.append(
                {
                    "dtype": str(dtype).removeprefix("torch."),
                    "rows": rows,
                    "categories": categories,
                    "threads": count,
                    "kernel": kernel,
                    "ns_per_entry": timing["median_s"] / (rows * categories) * 1e9,
                    **timing,
                }
            )
    return records


def kernel_table(records: list[dict]) -> Table:
    """One row per dtype, size and thread count: each kernel's median ns per entry."""
    kernels = list(dict.fromkeys(r["kernel"] for r in records))
    table = Table(title="CPU kernels: median ns per entry (rows x K entries per call)")
    for column in ["dtype", "rows x K", "threads", *kernels]:
        table.add_column(column, justify="right")
    rows: dict[tuple, dict[str, float]] = {}
    for r in records:
        key = (r["dtype"], f"{r['rows']} x {r['categories']}", r["threads"])
        rows.setdefault(key, {})[r["kernel"]] = r["ns_per_entry"]
    for (dtype, size, count), by_kernel in rows.items():
        table.add_row(dtype, size, str(count), *(f"{by_kernel[k]:.3g}" for k in kernels))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    args = parser.parse_args()
    if not native.KERNELS.active():
        raise SystemExit(f"the CPU kernels are not in use: {native.native_kernels_status()}")
    threads = sorted({1, torch.get_num_threads()})
    records = measure(threads, args.rounds)
    console = Console(width=200)
    console.print(kernel_table(records))
    out = args.out or Path(__file__).parent / "results" / "kernels-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": threads,
        "machine": platform.processor() or platform.machine(),
        "rounds": args.rounds,
        "temperature": TEMPERATURE,
    }
    out.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
