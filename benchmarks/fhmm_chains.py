"""Where enumeration stops: the factorial HMM with M = 2 to 12 chains, every method from the same
start, the held-out metric against wall-clock seconds, and the time each method takes to come
within the tie of the best metric, against M.

For each M this runs ``reinmax-compare fhmm --chains M`` (Pyro, ``--length 10``, the same
seeds, steps and learning rate for every method) into ``results/fhmm_chains/M<M>/`` and then
reads the runs back: a method's *time to the tie* is the training time (evaluations excluded)
from which its metric stays within ``TIE`` of the best final metric of that M's run. Methods:
exact enumeration and ``hybrid`` (both run while the K^M joint states per step stay within
the fhmm example's ``ENUM_LIMIT``: past it, the hybrid's default budget still sums 6 chains out,
and contracting them over the time steps costs ten times or more enumeration's step at M = 6),
ReinMax and straight-through under ``TraceLocalEnum_ELBO`` (``reinmax-local``,
``st-local``), REINFORCE (``reinforce``), leave-one-out REINFORCE (``rloo``) and the Concrete
relaxation (``gumbel-softmax``, the model relaxed to match). The metric is
exact up to 8 chains and a particle filter's estimate (20,000 particles, one fixed seed for
every method) beyond (``factorial_hmm.py``).

    python benchmarks/fhmm_chains.py            # results/fhmm_chains/ and fhmm_chains.png
    python benchmarks/fhmm_chains.py --chains 2,4 --steps 50   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reinmax_examples import compare
from reinmax_examples.fhmm_pyro import ENUM_LIMIT, TIE
from reinmax_examples.methods import METHOD_COLOURS

RESULTS = Path(__file__).parent / "results" / "fhmm_chains"
METHODS = ("enum", "hybrid", "reinmax-local", "st-local", "reinforce", "rloo", "gumbel-softmax")
CHAINS = (2, 4, 6, 8, 12)
STATES = 4


def not_run(method: str, chains: int) -> str | None:
    """Why ``method`` is left out at ``chains`` chains (None: it runs)."""
    joint = STATES**chains
    if joint <= ENUM_LIMIT:
        return None
    if method == "enum":
        return f"the K^M = {joint:,} joint states per step exceed ENUM_LIMIT = {ENUM_LIMIT:,}"
    if method == "hybrid":
        return (
            "its default budget (max_configurations = 4,096) sums 6 chains out, whose "
            "contraction over the time steps costs ten times or more enumeration's step at M = 6"
        )
    return None


def run(chains: int, steps: int, seeds: int, out: Path) -> dict:
    """One ``reinmax-compare fhmm`` run (kept when ``out`` already holds it); the methods left
    out are recorded with the reason."""
    if not (out / "results.json").exists():
        methods = [m for m in METHODS if not_run(m, chains) is None]
        argv = ["fhmm", "--chains", str(chains), "--length", "10", "--steps", str(steps)]
        argv += ["--seeds", str(seeds), "--methods", ",".join(methods), "--checkpoints", "5"]
        compare.main([*argv, "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    for method in METHODS:
        reason = not_run(method, chains)
        if reason is not None:
            results["methods"].setdefault(method, {"skipped": reason})
    return results


def time_to_tie(results: dict) -> dict[str, float | None]:
    """Per method, the training seconds from which its mean metric curve stays within ``TIE``
    of the best final metric of the run (None: not within it at the end)."""
    entries = {m: r for m, r in results["methods"].items() if r.get("metric") is not None}
    best = max(r["metric"] for r in entries.values())
    reached = {}
    for method, entry in entries.items():
        curve, since = entry["metric_curve"], None
        for seconds, value in zip(curve["seconds"], curve["metric"], strict=True):
            since = (seconds if since is None else since) if value >= best - TIE else None
        reached[method] = since
    return reached


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("--chains", default=",".join(map(str, CHAINS)))
    arguments.add_argument("--steps", type=int, default=200)
    arguments.add_argument("--seeds", type=int, default=1)
    arguments.add_argument("--out", type=Path, default=RESULTS)
    args = arguments.parse_args()
    rows = []
    for chains in map(int, args.chains.split(",")):
        results = run(chains, args.steps, args.seeds, args.out / f"M{chains}")
        reached = time_to_tie(results)
        rows.append(
            {
                "chains": chains,
                "metric": {m: r.get("metric") for m, r in results["methods"].items()},
                "seconds_to_tie": reached,
                "training_seconds": {
                    m: r["seconds"][-1] for m, r in results["methods"].items() if r.get("seconds")
                },
                "skipped": {
                    m: r["skipped"] for m, r in results["methods"].items() if "skipped" in r
                },
                "failed": {m: r["failed"] for m, r in results["methods"].items() if "failed" in r},
            }
        )
    table = Table(title=f"fhmm: seconds of training to come within {TIE} of the best metric")
    table.add_column("M", justify="right")
    for method in METHODS:
        table.add_column(method, justify="right")
    for row in rows:
        cells = []
        for method in METHODS:
            if method in row["skipped"] or method in row["failed"]:
                cells.append("not run" if method in row["skipped"] else "failed")
            elif row["seconds_to_tie"].get(method) is None:
                cells.append("never")
            else:
                cells.append(f"{row['seconds_to_tie'][method]:.0f}")
        table.add_row(str(row["chains"]), *cells)
    Console(width=120).print(table)
    summary = {"tie": TIE, "steps": args.steps, "seeds": args.seeds, "rows": rows}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(rows, args.out.parent / "fhmm_chains.png")
    print(f"wrote {args.out / 'summary.json'} and {args.out.parent / 'fhmm_chains.png'}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for method in METHODS:
        points = [
            (r["chains"], r["seconds_to_tie"][method])
            for r in rows
            if r["seconds_to_tie"].get(method) is not None
        ]
        if points:
            chains, seconds = zip(*points, strict=True)
            left.plot(chains, seconds, "o-", color=METHOD_COLOURS[method], label=method)
        finals = [(r["chains"], r["metric"].get(method)) for r in rows]
        finals = [(c, v) for c, v in finals if v is not None and math.isfinite(v)]
        if finals:
            chains, values = zip(*finals, strict=True)
            right.plot(chains, values, "o-", color=METHOD_COLOURS[method], label=method)
    left.set_yscale("log")
    left.set_xlabel("chains M (4 states each: 4^M joint states per step)")
    left.set_ylabel(f"seconds to within {TIE} nats/step of the best")
    right.set_xlabel("chains M")
    right.set_ylabel("held-out log-likelihood per step (final)")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
