"""How long the first estimator call waits while the CPU kernels compile (once per machine).

Each backend's kernels are built into an empty cache folder, in a fresh process (nothing loaded
or cached), and the first estimator call is timed; a second call in that process shows the
ordinary cost. Then a second fresh process on the same cache times the first call with the build
cached: loading only.

    python benchmarks/kernel_build.py      # prints the table, writes results/kernel_build.json
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

FIRST_CALL = {
    "pyro_reinmax": (
        "import time, torch, pyro_reinmax\n"
        "x = torch.randn(4, 8, requires_grad=True)\n"
        "times = []\n"
        "for _ in range(2):\n"
        "    start = time.perf_counter()\n"
        "    pyro_reinmax.reinmax(x, 1.3)[0].sum().backward()\n"
        "    times.append(time.perf_counter() - start)\n"
        "print(times[0], times[1], pyro_reinmax.native_kernels_status())\n"
    ),
    "numpyro_reinmax": (
        "import time, jax, numpyro_reinmax\n"
        "x, key = jax.numpy.zeros((4, 32)), jax.random.PRNGKey(0)\n"
        "times = []\n"
        "for _ in range(2):\n"
        "    start = time.perf_counter()\n"
        "    f = jax.grad(lambda y: numpyro_reinmax.reinmax(key, y, 1.3)[0].sum())\n"
        "    jax.block_until_ready(f(x))\n"
        "    times.append(time.perf_counter() - start)\n"
        "print(times[0], times[1], numpyro_reinmax.native_kernels_status())\n"
    ),
}


def first_calls(package: str, cache: Path) -> tuple[float, float, str]:
    """(first call, second call, status) in a fresh process with kernel cache ``cache``."""
    environment = {**os.environ, "REINMAX_CACHE_DIR": str(cache), "REINMAX_NATIVE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CALL[package]],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    first, second, status = done.stdout.strip().split(" ", 2)
    return float(first), float(second), status


def main() -> None:
    rows = []
    for package in FIRST_CALL:
        with tempfile.TemporaryDirectory() as cache:
            cold = first_calls(package, Path(cache))
            warm = first_calls(package, Path(cache))
        rows.append(
            {
                "package": package,
                "first_call_building_s": cold[0],
                "first_call_cached_s": warm[0],
                "second_call_s": cold[1],
                "status": cold[2],
            }
        )
    table = Table(title="First estimator call (seconds), fresh process, empty kernel cache")
    for column in ["package", "building the kernels", "build cached", "second call"]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["package"],
            f"{row['first_call_building_s']:.1f}",
            f"{row['first_call_cached_s']:.3f}",
            f"{row['second_call_s']:.4f}",
        )
    Console().print(table)
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    out = Path(__file__).parent / "results" / "kernel_build.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
