"""How close can an estimator written in Python get to the softmax floor at small sizes?

The speed target "sample + backward within 3x the softmax floor" meets, at small sizes, the cost
of each eager operation (a few microseconds of dispatch whatever the size) and of a custom
``autograd.Function``. This times, against the floor: a Function that only computes the softmax
and its backward (the price of the Python Function itself); a *skeleton*, the fewest eager
operations that any exact draw with a ReinMax-shaped backward needs (softmax, a float32 cumulative
sum, one uniform per row, ``searchsorted``, a one-hot scatter; in the backward one :math:`J(a) g`
with :math:`a = \\pi + D`; not a correct estimator: no float64 sums, no validation, no
:math:`J(\\pi_0)` term, no temperature); and the package's ``reinmax`` as its C++ estimator
operator (the default on the CPU), as its Python ``autograd.Function`` calling the same C kernels
(the operator's fallback), and on its PyTorch path (``REINMAX_NATIVE=0``).

    python benchmarks/eager_floor.py        # prints the table, writes results/eager_floor-cpu.json
"""

from __future__ import annotations

import os

os.environ.setdefault("REINMAX_NATIVE", "1")  # the kernels are opt-in: measure them here

import argparse
import contextlib
import json
import platform
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import pyro_reinmax
from pyro_reinmax import native
from timing import InSetting, interleaved_medians

SHAPES = [(1, 2), (1, 64), (64, 64), (1024, 64)]
TEMPERATURE = 1.3


class SoftmaxFunction(torch.autograd.Function):
    r"""Softmax and its backward :math:`J(\pi) g`, through a Python ``autograd.Function``."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(-1)
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (probs,) = ctx.saved_tensors
        weighted = probs * g
        return weighted - probs * weighted.sum(-1, keepdim=True)


class ReinMaxSkeleton(torch.autograd.Function):
    r"""Forward: an inverse-CDF one-hot draw :math:`D`. Backward: :math:`J(\pi + D) g` only."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(-1)
        cdf = probs.cumsum(-1)
        u = torch.rand(cdf.shape[:-1] + (1,), dtype=cdf.dtype) * cdf[..., -1:]
        sample = torch.zeros_like(probs).scatter_(-1, torch.searchsorted(cdf, u), 1.0)
        ctx.save_for_backward(probs, sample)
        return sample

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        probs, sample = ctx.saved_tensors
        anchor = probs + sample
        weighted = anchor * g
        return weighted - anchor * weighted.sum(-1, keepdim=True)


def methods(shape: tuple[int, int]) -> dict:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=generator).requires_grad_()
    upstream = torch.randn(shape, generator=generator)

    def run(draw):
        def step():
            logits.grad = None
            (draw() * upstream).sum().backward()

        return step

    def on_path(kernels: bool, step, operator: bool = True) -> InSetting:
        @contextlib.contextmanager
        def path():
            pyro_reinmax.set_native_kernels(kernels)
            built = native.EstimatorOperator.operator
            native.EstimatorOperator.operator = built if operator else None
            try:
                yield
            finally:
                native.EstimatorOperator.operator = built
                pyro_reinmax.set_native_kernels(None)

        return InSetting(step, path)

    reinmax = run(lambda: pyro_reinmax.reinmax(logits, TEMPERATURE)[0])
    return {
        "softmax floor": run(lambda: logits.softmax(-1)),
        "softmax Function": run(lambda: SoftmaxFunction.apply(logits)),
        "skeleton": run(lambda: ReinMaxSkeleton.apply(logits)),
        "reinmax, C++ operator": on_path(True, reinmax),
        "reinmax, Python Function on the kernels": on_path(True, reinmax, operator=False),
        "reinmax, PyTorch path": on_path(False, reinmax),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "eager_floor-cpu.json"
    )
    args = parser.parse_args()
    rows = []
    for shape in SHAPES:
        medians = interleaved_medians(methods(shape), rounds=args.rounds)
        floor = medians["softmax floor"]["median_s"]
        for name, timing in medians.items():
            rows.append(
                {
                    "shape": list(shape),
                    "method": name,
                    "median_us": timing["median_s"] * 1e6,
                    "relative_to_floor": timing["median_s"] / floor,
                }
            )
    table = Table(title="Sample + backward, float32, CPU: median us per call (x the floor)")
    names = list(dict.fromkeys(r["method"] for r in rows))
    for column in ["rows x categories", *names]:
        table.add_column(column, justify="right")
    for shape in SHAPES:
        cells = {r["method"]: r for r in rows if tuple(r["shape"]) == shape}
        table.add_row(
            f"{shape[0]} x {shape[1]}",
            *(f"{cells[n]['median_us']:.0f} ({cells[n]['relative_to_floor']:.2f}x)" for n in names),
        )
    Console().print(table)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),  # as speed.py records it
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
