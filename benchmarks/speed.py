"""Sample + backward speed of the estimators, side by side, across sizes and dtypes.

Each method draws a one-hot sample from ``logits`` of shape ``(rows, categories)`` and
backpropagates a fixed upstream gradient to the logits. The floor is a plain softmax forward and
backward of the same size. Times are medians of interleaved rounds (see ``timing.py``); ratios are
between methods of the same run. JAX methods are jit-compiled and return the sample with the
gradient (XLA would otherwise drop a draw that the gradient does not need).

    python benchmarks/speed.py                      # full grid, torch and JAX, on the CPU
    python benchmarks/speed.py --quick              # the headline size only
    python benchmarks/speed.py --device cuda        # the same tables on a GPU
"""

from __future__ import annotations

import os

os.environ.setdefault("REINMAX_NATIVE", "1")  # the kernels are opt-in: measure them here

import argparse
import contextlib
import json
import platform
from pathlib import Path

import jax
import reinmax as reference_package
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import track
from rich.table import Table

import numpyro_reinmax
import pyro_reinmax
from timing import InSetting, interleaved_medians

HEADLINE = (8192, 64)
GRID_ROWS = [1, 64, 1024, 8192, 65536]
GRID_CATEGORIES = [2, 64, 1024, 32768]
MAX_ELEMENTS = 2**23
AVERAGED_MAX_ELEMENTS = 2**20
TEMPERATURE = 1.3


def _averaged(elements: int, methods: dict) -> dict:
    """The rules averaged over 10 conditional draws, up to ``AVERAGED_MAX_ELEMENTS`` logits (their
    noise is 10 times the logits' size)."""
    return methods if elements <= AVERAGED_MAX_ELEMENTS else {}


def torch_methods(rows: int, categories: int, dtype: str, device: str) -> dict:
    generator = torch.Generator(device=device).manual_seed(0)
    shape, torch_dtype = (rows, categories), getattr(torch, dtype)
    logits = torch.randn(shape, dtype=torch_dtype, device=device, generator=generator)
    logits.requires_grad_()
    upstream = torch.randn(shape, dtype=torch_dtype, device=device, generator=generator)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run(draw):
        def step():
            logits.grad = None
            (draw() * upstream).sum().backward()
            sync()

        return step

    def distribution_rsample():
        return pyro_reinmax.ReinMaxOneHotCategorical(
            logits=logits, temperature=TEMPERATURE
        ).rsample()

    @contextlib.contextmanager
    def kernels_off():
        pyro_reinmax.set_native_kernels(False)
        try:
            yield
        finally:
            pyro_reinmax.set_native_kernels(None)

    reinmax = run(lambda: pyro_reinmax.reinmax(logits, TEMPERATURE)[0])
    return {
        "softmax floor": run(lambda: logits.softmax(-1)),
        "reinmax": reinmax,
        "reinmax, PyTorch path": InSetting(reinmax, kernels_off),
        "ReinMax rsample": run(distribution_rsample),
        "reference 0.1.0": run(lambda: reference_package.reinmax(logits, TEMPERATURE)[0]),
        "ST": run(lambda: pyro_reinmax.straight_through(logits, TEMPERATURE)[0]),
        "ST-Gumbel": run(lambda: pyro_reinmax.gumbel_straight_through(logits, TEMPERATURE)[0]),
        "F.gumbel_softmax": run(lambda: F.gumbel_softmax(logits, TEMPERATURE, hard=True)),
        "GST": run(lambda: pyro_reinmax.gapped_straight_through(logits, TEMPERATURE)[0]),
        "GR-MCK S=1": run(lambda: pyro_reinmax.gumbel_rao(logits, TEMPERATURE, samples=1)[0]),
        **_averaged(
            rows * categories,
            {
                "GR-MCK S=10": run(
                    lambda: pyro_reinmax.gumbel_rao(logits, TEMPERATURE, samples=10)[0]
                ),
                "ReinMax-Rao S=10": run(lambda: pyro_reinmax.reinmax_rao(logits, TEMPERATURE)[0]),
                "ReinMax-CV S=10": run(lambda: pyro_reinmax.reinmax_cv(logits, TEMPERATURE)[0]),
            },
        ),
    }


def _hand_written_straight_through(key, logits):
    """What a JAX user writes today: a Gumbel-max draw, then sample + p - stop_gradient(p)."""
    probs = jax.nn.softmax(logits, -1)
    sample = jax.nn.one_hot(
        jax.random.categorical(key, logits), logits.shape[-1], dtype=logits.dtype
    )
    return sample + probs - jax.lax.stop_gradient(probs)


def jax_methods(rows: int, categories: int, dtype: str, device: str) -> dict:
    jax_device = jax.devices("gpu" if device.startswith("cuda") else "cpu")[0]
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    shape = (rows, categories)
    logits = jax.device_put(jax.random.normal(keys[0], shape, dtype), jax_device)
    upstream = jax.device_put(jax.random.normal(keys[1], shape, dtype), jax_device)

    def run(draw):
        @jax.jit
        def step(key, logits):
            return jax.value_and_grad(lambda x: (draw(key, x) * upstream).sum())(logits), draw(
                key, logits
            )

        return lambda: jax.block_until_ready(step(keys[2], logits))

    def without_kernels(draw):
        """Compiled now, with the kernels off (set_native_kernels clears JAX's caches)."""
        numpyro_reinmax.set_native_kernels(False)
        step = jax.jit(
            lambda key, x: jax.value_and_grad(lambda y: (draw(key, y) * upstream).sum())(x)
        )
        compiled = step.lower(keys[2], logits).compile()
        numpyro_reinmax.set_native_kernels(None)
        return lambda: jax.block_until_ready(compiled(keys[2], logits))

    def distribution_sample(key, x):
        return numpyro_reinmax.ReinMaxOneHotCategorical(logits=x, temperature=TEMPERATURE).sample(
            key
        )

    return {
        "softmax floor": run(lambda key, x: jax.nn.softmax(x, -1)),
        "reinmax": run(lambda key, x: numpyro_reinmax.reinmax(key, x, TEMPERATURE)[0]),
        "reinmax, JAX path": without_kernels(
            lambda key, x: numpyro_reinmax.reinmax(key, x, TEMPERATURE)[0]
        ),
        "ReinMax sample": run(distribution_sample),
        "ST (hand-written)": run(_hand_written_straight_through),
        "ST": run(lambda key, x: numpyro_reinmax.straight_through(key, x, TEMPERATURE)[0]),
        "ST-Gumbel": run(
            lambda key, x: numpyro_reinmax.gumbel_straight_through(key, x, TEMPERATURE)[0]
        ),
        "GST": run(lambda key, x: numpyro_reinmax.gapped_straight_through(key, x, TEMPERATURE)[0]),
        "GR-MCK S=1": run(
            lambda key, x: numpyro_reinmax.gumbel_rao(key, x, TEMPERATURE, samples=1)[0]
        ),
        "GR-MCK S=10": run(
            lambda key, x: numpyro_reinmax.gumbel_rao(key, x, TEMPERATURE, samples=10)[0]
        ),
        "ReinMax-Rao S=10": run(lambda key, x: numpyro_reinmax.reinmax_rao(key, x, TEMPERATURE)[0]),
        "ReinMax-CV S=10": run(lambda key, x: numpyro_reinmax.reinmax_cv(key, x, TEMPERATURE)[0]),
    }


BACKENDS = {
    "torch": {
        "methods": torch_methods,
        "ratios": {  # column title: (numerator, denominator)
            "reference / ours": ("reference 0.1.0", "reinmax"),
            "ours / PyTorch path": ("reinmax", "reinmax, PyTorch path"),
            "rsample / op": ("ReinMax rsample", "reinmax"),
            "ours / floor": ("reinmax", "softmax floor"),
            "GST / ours": ("GST", "reinmax"),
            "GR-MCK S=1 / ours": ("GR-MCK S=1", "reinmax"),
        },
        "legend": {
            "softmax floor": "softmax(logits) forward + backward: the floor",
            "reinmax": "pyro_reinmax.reinmax(logits, 1.3)",
            "reinmax, PyTorch path": "the same with REINMAX_NATIVE=0 (no C kernels)",
            "ReinMax rsample": "ReinMaxOneHotCategorical(logits=logits, temperature=1.3).rsample()",
            "reference 0.1.0": "reinmax.reinmax(logits, 1.3) from the reference package",
            "ST": "pyro_reinmax.straight_through(logits, 1.3)",
            "ST-Gumbel": "pyro_reinmax.gumbel_straight_through(logits, 1.3)",
            "F.gumbel_softmax": "torch.nn.functional.gumbel_softmax(logits, 1.3, hard=True)",
            "GST": "pyro_reinmax.gapped_straight_through(logits, 1.3) (gap 1)",
            "GR-MCK S=1": "pyro_reinmax.gumbel_rao(logits, 1.3, samples=1)",
            "GR-MCK S=10": "pyro_reinmax.gumbel_rao(logits, 1.3, samples=10)",
            "ReinMax-Rao S=10": "pyro_reinmax.reinmax_rao(logits, 1.3) (10 draws)",
            "ReinMax-CV S=10": "pyro_reinmax.reinmax_cv(logits, 1.3) (10 draws, eta 1)",
        },
    },
    "jax": {
        "methods": jax_methods,
        "ratios": {
            "ours / hand-written ST": ("reinmax", "ST (hand-written)"),
            "ours / JAX path": ("reinmax", "reinmax, JAX path"),
            "sample / op": ("ReinMax sample", "reinmax"),
            "ours / floor": ("reinmax", "softmax floor"),
            "GST / ours": ("GST", "reinmax"),
            "GR-MCK S=1 / ours": ("GR-MCK S=1", "reinmax"),
        },
        "legend": {
            "softmax floor": "jax.nn.softmax forward + backward (jit): the floor",
            "reinmax": "numpyro_reinmax.reinmax(key, logits, 1.3) (jit)",
            "reinmax, JAX path": "the same with REINMAX_NATIVE=0 (no C kernels)",
            "ReinMax sample": "ReinMaxOneHotCategorical(logits, temperature=1.3).sample(key)",
            "ST (hand-written)": "one_hot(jax.random.categorical) + p - stop_gradient(p) (jit)",
            "ST": "numpyro_reinmax.straight_through(key, logits, 1.3) (jit)",
            "ST-Gumbel": "numpyro_reinmax.gumbel_straight_through(key, logits, 1.3) (jit)",
            "GST": "numpyro_reinmax.gapped_straight_through(key, logits, 1.3) (jit)",
            "GR-MCK S=1": "numpyro_reinmax.gumbel_rao(key, logits, 1.3, samples=1) (jit)",
            "GR-MCK S=10": "numpyro_reinmax.gumbel_rao(key, logits, 1.3, samples=10) (jit)",
            "ReinMax-Rao S=10": "numpyro_reinmax.reinmax_rao(key, logits, 1.3) (jit)",
            "ReinMax-CV S=10": "numpyro_reinmax.reinmax_cv(key, logits, 1.3) (jit)",
        },
    },
}


def sizes(quick: bool) -> list[tuple[int, int]]:
    if quick:
        return [HEADLINE]
    return [(r, k) for r in GRID_ROWS for k in GRID_CATEGORIES if r * k <= MAX_ELEMENTS]


def measure(args) -> list[dict]:
    records = []
    jobs = [
        (backend, rows, k, dtype)
        for backend in args.backends
        for dtype in args.dtypes
        for rows, k in sizes(args.quick)
    ]
    for backend, rows, k, dtype in track(jobs, description="timing"):
        methods = BACKENDS[backend]["methods"](rows, k, dtype, args.device)
        for method, timing in interleaved_medians(methods, args.rounds).items():
            records.append(
                {
                    "backend": backend,
                    "rows": rows,
                    "categories": k,
                    "dtype": dtype,
                    "method": method,
                    **timing,
                }
            )
    return records


def speed_table(records: list[dict], backend: str, device: str) -> Table:
    """One row per dtype and size: every method's median in ms, then the headline ratios."""
    ratios = BACKENDS[backend]["ratios"]
    records = [r for r in records if r["backend"] == backend]
    methods = list(dict.fromkeys(r["method"] for r in records))
    table = Table(title=f"{backend} on {device}: sample + backward, median ms per call")
    for column in ["dtype", "rows x K", *methods, *ratios]:
        table.add_column(column, justify="right")
    times: dict[tuple, dict[str, float]] = {}
    for r in records:
        times.setdefault((r["dtype"], r["rows"], r["categories"]), {})[r["method"]] = r["median_s"]
    for (dtype, rows, k), by_method in times.items():
        cells = [f"{by_method[m] * 1e3:.3g}" if m in by_method else "-" for m in methods]
        cells += [f"{by_method[a] / by_method[b]:.2f}" for a, b in ratios.values()]
        table.add_row(dtype, f"{rows} x {k}", *cells)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backends", default="torch,jax", type=lambda s: s.split(","))
    parser.add_argument("--dtypes", default="float32,float64", type=lambda s: s.split(","))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="only the headline size")
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    args = parser.parse_args()
    if "float64" in args.dtypes:
        jax.config.update("jax_enable_x64", True)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda: no CUDA device is available; the GPU rows were not measured."
        )

    records = measure(args)
    console = Console(width=220)
    for backend in args.backends:
        console.print(speed_table(records, backend, args.device))
        for name, meaning in BACKENDS[backend]["legend"].items():
            console.print(f"  {name:>18}: {meaning}")
    out = args.out or Path(__file__).parent / "results" / f"speed-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": args.device,
        "torch": torch.__version__,
        "jax": jax.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "rounds": args.rounds,
    }
    legend = {backend: BACKENDS[backend]["legend"] for backend in args.backends}
    out.write_text(json.dumps({"meta": meta, "legend": legend, "records": records}, indent=1))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
