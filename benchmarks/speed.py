"""Sample + backward speed of the estimators, side by side, across sizes and dtypes.

Each method draws a one-hot sample from ``logits`` of shape ``(rows, categories)`` and
backpropagates a fixed upstream gradient to the logits. The floor is a plain softmax forward and
backward of the same size. Times are medians of interleaved rounds (see ``timing.py``); ratios are
between methods of the same run.

    python benchmarks/speed.py                      # full grid on the CPU
    python benchmarks/speed.py --quick              # the headline size only
    python benchmarks/speed.py --device cuda        # the same tables on a GPU
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import reinmax as reference_package
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import track
from rich.table import Table

import pyro_reinmax
from timing import interleaved_medians

HEADLINE = (8192, 64)
GRID_ROWS = [1, 64, 1024, 8192, 65536]
GRID_CATEGORIES = [2, 64, 1024, 32768]
MAX_ELEMENTS = 2**23
FLOOR = "softmax floor"
OURS = "reinmax"
RATIOS = {  # column title: (numerator, denominator)
    "reference / ours": ("reference 0.1.0", OURS),
    "rsample / op": ("ReinMax rsample", OURS),
    "ours / floor": (OURS, FLOOR),
}
LEGEND = {
    FLOOR: "softmax(logits) forward + backward: the floor",
    OURS: "pyro_reinmax.reinmax(logits, 1.3)",
    "ReinMax rsample": "ReinMaxOneHotCategorical(logits=logits, temperature=1.3).rsample()",
    "reference 0.1.0": "reinmax.reinmax(logits, 1.3) from the reference package",
    "ST": "pyro_reinmax.straight_through(logits, 1.3)",
    "ST-Gumbel": "pyro_reinmax.gumbel_straight_through(logits, 1.3)",
    "F.gumbel_softmax": "torch.nn.functional.gumbel_softmax(logits, 1.3, hard=True)",
}


def torch_methods(rows: int, categories: int, dtype: torch.dtype, device: str) -> dict:
    generator = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(rows, categories, dtype=dtype, device=device, generator=generator)
    logits.requires_grad_()
    upstream = torch.randn(rows, categories, dtype=dtype, device=device, generator=generator)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run(draw):
        def step():
            logits.grad = None
            (draw() * upstream).sum().backward()
            sync()

        return step

    return {
        FLOOR: run(lambda: logits.softmax(-1)),
        OURS: run(lambda: pyro_reinmax.reinmax(logits, 1.3)[0]),
        "ReinMax rsample": run(
            lambda: pyro_reinmax.ReinMaxOneHotCategorical(logits=logits, temperature=1.3).rsample()
        ),
        "reference 0.1.0": run(lambda: reference_package.reinmax(logits, 1.3)[0]),
        "ST": run(lambda: pyro_reinmax.straight_through(logits, 1.3)[0]),
        "ST-Gumbel": run(lambda: pyro_reinmax.gumbel_straight_through(logits, 1.3)[0]),
        "F.gumbel_softmax": run(lambda: F.gumbel_softmax(logits, 1.3, hard=True)),
    }


def sizes(quick: bool) -> list[tuple[int, int]]:
    if quick:
        return [HEADLINE]
    grid = [(r, k) for r in GRID_ROWS for k in GRID_CATEGORIES if r * k <= MAX_ELEMENTS]
    return grid if HEADLINE in grid else [*grid, HEADLINE]


def measure(args) -> list[dict]:
    records = []
    jobs = [(rows, k, dtype) for dtype in args.dtypes for rows, k in sizes(args.quick)]
    for rows, k, dtype_name in track(jobs, description="timing"):
        dtype = getattr(torch, dtype_name)
        timings = interleaved_medians(torch_methods(rows, k, dtype, args.device), args.rounds)
        for method, timing in timings.items():
            records.append(
                {"rows": rows, "categories": k, "dtype": dtype_name, "method": method, **timing}
            )
    return records


def speed_table(records: list[dict], title: str) -> Table:
    """One row per dtype and size: every method's median in ms, then the headline ratios."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    table = Table(title=title)
    for column in ["dtype", "rows x K", *methods, *RATIOS]:
        table.add_column(column, justify="right")
    times: dict[tuple, dict[str, float]] = {}
    for r in records:
        times.setdefault((r["dtype"], r["rows"], r["categories"]), {})[r["method"]] = r["median_s"]
    for (dtype, rows, k), by_method in times.items():
        ratios = [f"{by_method[a] / by_method[b]:.2f}" for a, b in RATIOS.values()]
        milliseconds = [f"{by_method[m] * 1e3:.3g}" for m in methods]
        table.add_row(dtype, f"{rows} x {k}", *milliseconds, *ratios)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", default="float32,float64", type=lambda s: s.split(","))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="only the headline size")
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda: no CUDA device is available; the GPU rows were not measured."
        )

    records = measure(args)
    console = Console(width=200)
    console.print(speed_table(records, f"Sample + backward on {args.device}, median ms per call"))
    for name, meaning in LEGEND.items():
        console.print(f"  {name:>16}: {meaning}")
    out = args.out or Path(__file__).parent / "results" / f"speed-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "rounds": args.rounds,
    }
    out.write_text(json.dumps({"meta": meta, "legend": LEGEND, "records": records}, indent=1))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
