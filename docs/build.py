"""Build ``docs/results.md`` and the results section of ``README.md`` (the factorial HMM study)
from the JSON files that the benchmarks and ``reinmax-compare`` wrote. Every number in those pages
comes from here.

    python docs/build.py
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from reinmax_examples.compare import verdict
from reinmax_examples.methods import CHECKPOINTS, DEFAULT_METHODS, METHODS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from data_parallel import HEADER, table_rows  # noqa: E402  (the benchmark's own table cells)

RUNS = ROOT / "docs" / "results"


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _milliseconds(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.3g} ms"


def _missing(command: str) -> str:
    return f"Not generated yet: run `{command}`."


COMPARE_RUNS = [
    f"{model}-{backend}"
    for model in ("gmm", "lda", "vae", "fhmm", "fhmm6", "sbn", "regimes")
    for backend in ("pyro", "numpyro")
]


def _compare_command(folder: str, results: dict) -> str:
    config = results["config"]
    command = f"reinmax-compare {results['model']} --backend {results['backend']}"
    if config["seeds"] > 1:
        command += f" --seeds {config['seeds']}"
    if results["model"] == "fhmm" and config["chains"] != 3:
        command += f" --chains {config['chains']}"
    if results["model"] == "regimes" and config.get("steps") != 300:
        command += f" --steps {config['steps']}"
    if config.get("checkpoints", CHECKPOINTS) != CHECKPOINTS:
        command += f" --checkpoints {config['checkpoints']}"
    if list(config["methods"]) != list(DEFAULT_METHODS):
        command += f" --methods {','.join(config['methods'])}"
    command = f"`{command} --out docs/results/{folder}`"
    added = [m for addition in results.get("additions", []) for m in addition["methods"]]
    if added:
        command += f" ({', '.join(dict.fromkeys(added))} added to the run with `--add`)"
    return command


def compare_section() -> str:
    rows, notes = [], []
    for folder in COMPARE_RUNS:
        results = _load(RUNS / folder / "results.json")
        if results is None:
            continue
        seeds = results["config"]["seeds"]
        cells = []
        for method in METHODS:
            entry = results["methods"].get(method, {})
            if method not in results["config"]["methods"]:
                cells.append("not run")
            elif entry.get("skipped"):
                skipped = entry["skipped"]
                cells.append(
                    "intractable" if "intractable" in skipped or "exceed" in skipped else "n/a"
                )
            elif entry.get("metric") is None:
                cells.append("-")
            else:
                spread = f" ± {entry['metric_std']:.2f}" if seeds > 1 else ""
                digits = 3 if abs(entry["metric"]) < 20 else 2 if abs(entry["metric"]) < 100 else 1
                cells.append(f"{entry['metric']:.{digits}f}{spread}")
        model = results["model"]
        if model == "fhmm":
            model += f" (M = {results['config']['chains']})"
        rows.append([model, results["backend"], results["metric_name"], str(seeds), *cells])
        # the verdict recomputed from the recorded curves, so it follows the current definition
        notes.append(f"* {_compare_command(folder, results)}: {verdict(results)}")
    if not rows:
        return _missing("reinmax-compare gmm --out docs/results/gmm-pyro")
    table = _table(["model", "backend", "metric (higher is better)", "seeds", *METHODS], rows)
    return table + "\n\n" + "\n".join(notes)


GRID_RATIOS = {  # column title: (numerator, denominator); missing methods are left blank
    "reinmax / floor": ("reinmax", "softmax floor"),
    "time with / without kernels": ("reinmax", None),
    "GST / reinmax": ("GST", "reinmax"),
    "GR-MCK S=1 / reinmax": ("GR-MCK S=1", "reinmax"),
    "ST-Gumbel / reinmax": ("ST-Gumbel", "reinmax"),
}
WITHOUT_KERNELS = {"torch": "reinmax, PyTorch path", "jax": "reinmax, JAX path"}


def _speed_grid(records: list[dict], backend: str) -> str:
    """Every size and dtype of the grid: ReinMax against the floor and against itself without the
    C kernels, and the single-sample rules against ReinMax."""
    medians, fastest = _times_by_size(records, "median_s"), _times_by_size(records, "min_s")
    rows = []
    for key, by in sorted(medians.items()):
        dtype, n, k = key
        cells = [dtype, f"{n} x {k}"]
        for numerator, denominator in GRID_RATIOS.values():
            denominator = denominator or WITHOUT_KERNELS[backend]
            cells.append(_ratio(by, numerator, denominator))
            if cells[-1] and key in fastest:
                cells[-1] += f" ({_ratio(fastest[key], numerator, denominator)})"
        rows.append(cells)
    in_parentheses = (
        "; in parentheses, ratios of the fastest rounds (noise only adds time)" if fastest else ""
    )
    return (
        f"**{backend}**, every size of the grid (ratios of medians in the same run"
        f"{in_parentheses}):\n\n"
        + _table(["dtype", "rows x K", *GRID_RATIOS], rows)
        + "\n\n"
        + _grid_summary({"medians": medians, "fastest rounds": fastest}, backend)
    )


def _times_by_size(records: list[dict], statistic: str) -> dict[tuple, dict[str, float]]:
    """``statistic`` (``"median_s"``, ``"min_s"``) of each method, by (dtype, rows, categories);
    records without it are left out."""
    times: dict[tuple, dict[str, float]] = {}
    for r in records:
        if statistic in r:
            key = (r["dtype"], r["rows"], r["categories"])
            times.setdefault(key, {})[r["method"]] = r[statistic]
    return times


GRID_BOUNDS = {
    "reinmax / floor": 3.0,
    "GST / reinmax": 1.5,
    "GR-MCK S=1 / reinmax": 1.5,
    "ST-Gumbel / reinmax": 1.5,
}
"""The speed targets of the grid: ReinMax within 3x the softmax floor, each single-sample rule
within 1.5x ReinMax."""


def _grid_summary(times: dict[str, dict[tuple, dict[str, float]]], backend: str) -> str:
    """Per ratio of the targets: its range over the grid and the sizes above the bound, for each
    statistic's times (:func:`_times_by_size`, by the statistic's name)."""
    sentences = []
    for title, bound in GRID_BOUNDS.items():
        numerator, denominator = GRID_RATIOS[title]
        parts = []
        for label, by_size in times.items():
            ratios = {
                key: by[numerator] / by[denominator]
                for key, by in by_size.items()
                if numerator in by and denominator in by
            }
            if not ratios:
                continue
            above = sorted(
                (value, f"{n} x {k} {dtype}")
                for (dtype, n, k), value in ratios.items()
                if value > bound
            )
            listed = ", ".join(f"{size} {value:.2f}" for value, size in reversed(above))
            parts.append(
                f"{label} {min(ratios.values()):.2f} to {max(ratios.values()):.2f} "
                f"(median {statistics.median(ratios.values()):.2f}), above {bound:g} at "
                f"{len(above)} of {len(ratios)}" + (f": {listed}" if listed else "")
            )
        if parts:
            sentences.append(f"* {backend} {title}: " + "; ".join(parts) + ".")
    return "\n".join(sentences)


def _ratio(times: dict[str, float], numerator: str, denominator: str) -> str:
    """``numerator / denominator`` to two decimals, blank where either was not timed."""
    if numerator not in times or denominator not in times:
        return ""
    return f"{times[numerator] / times[denominator]:.2f}"


def speed_section(device: str = "cpu") -> str:
    results = _load(RESULTS / f"speed-{device}.json")
    if results is None:
        return _missing(f"python benchmarks/speed.py --device {device}")
    parts = []
    for backend, reference in (("torch", "reference 0.1.0"), ("jax", "ST (hand-written)")):
        records = [r for r in results["records"] if r.get("backend", "torch") == backend]
        headline = [
            r for r in records if (r["rows"], r["categories"], r["dtype"]) == (8192, 64, "float32")
        ]
        if not headline:
            continue
        times = {r["method"]: r["median_s"] for r in headline}
        floor = times["softmax floor"]
        rows = [
            [m, f"{t * 1e3:.3g}", f"{t / times['reinmax']:.2f}", f"{t / floor:.2f}"]
            for m, t in times.items()
        ]
        parts.append(
            f"**{backend}**, float32, 8192 x 64, median ms per call (interleaved runs):\n\n"
        )
        parts[-1] += _table(["method", "ms", "relative to reinmax", "relative to floor"], rows)
        sizes = {(r["rows"], r["categories"], r["dtype"]) for r in records}
        ratios = []
        for size in sizes:
            by = {
                r["method"]: r["median_s"]
                for r in records
                if (r["rows"], r["categories"], r["dtype"]) == size
            }
            if reference in by:
                ratios.append(by[reference] / by["reinmax"])
        if ratios:
            parts[-1] += (
                f"\n\nAcross the {len(sizes)} sizes and dtypes of the grid, {reference} / reinmax "
                "ranges from "
                f"{min(ratios):.2f} to {max(ratios):.2f} (median {statistics.median(ratios):.2f})."
            )
            parts.append(_speed_grid(records, backend))
    legend = results.get("legend", {})
    if isinstance(legend, dict):
        lines = [
            f"* {name}: `{meaning}`"
            for backend in legend.values()
            for name, meaning in backend.items()
        ]
        parts.append("\n".join(lines))
    command = "python benchmarks/speed.py" + ("" if device == "cpu" else f" --device {device}")
    return (
        "\n\n".join(parts)
        + f"\n\nProduced by `{command}` "
        + f"(torch {results['meta'].get('torch')}, jax {results['meta'].get('jax')})."
    )


def _relative_cost(row: dict, base: dict) -> str:
    return f"{row['cost_us_per_estimate'] / base['cost_us_per_estimate']:.2f}"


def eager_floor_section() -> str:
    results = _load(RESULTS / "eager_floor-cpu.json")
    if results is None:
        return _missing("python benchmarks/eager_floor.py")
    rows = results["rows"]
    names = list(dict.fromkeys(r["method"] for r in rows))
    shapes = list(dict.fromkeys(tuple(r["shape"]) for r in rows))
    cells = {(tuple(r["shape"]), r["method"]): r for r in rows}
    table_rows = [
        [f"{a} x {b}"]
        + [
            f"{cells[(a, b), n]['median_us']:.0f} ({cells[(a, b), n]['relative_to_floor']:.2f}x)"
            for n in names
        ]
        for a, b in shapes
    ]
    return (
        "Median microseconds per sample + backward (x the softmax floor), float32, torch "
        f"{results['meta']['torch']} with {results['meta']['threads']} threads, reinmax at "
        "temperature 1.3. The softmax Function computes only the softmax and its backward, "
        "through a Python autograd.Function: the price of the Function itself. The skeleton is "
        "the fewest eager operations any exact draw with a ReinMax-shaped backward needs "
        "(softmax, a float32 cumulative sum, one uniform per row, searchsorted, a one-hot "
        "scatter; one J(pi + D) g in the backward) and is not a correct estimator. reinmax runs "
        "as the package's C++ estimator operator over its C kernels (the default on the CPU), as "
        "its Python autograd.Function calling the same kernels (the fallback where the operator "
        "does not build), and on its PyTorch path (REINMAX_NATIVE=0).\n\n"
        + _table(["rows x categories", *names], table_rows)
        + "\n\nProduced by `python benchmarks/eager_floor.py`."
    )


def kernels_section() -> str:
    results = _load(RESULTS / "kernels-cpu.json")
    if results is None:
        return _missing("python benchmarks/kernels.py")
    records = results["records"]
    kernels = list(dict.fromkeys(r["kernel"] for r in records))
    cells: dict[tuple, dict[str, float]] = {}
    for r in records:
        key = (r["dtype"], f"{r['rows']} x {r['categories']}", str(r["threads"]))
        cells.setdefault(key, {})[r["kernel"]] = r["ns_per_entry"]
    rows = [[*key, *(f"{by[k]:.3g}" for k in kernels)] for key, by in cells.items()]
    return (
        "Median nanoseconds per entry of each C kernel (`reinmax_kernels/kernels.c`), called "
        "through `pyro_reinmax.native` on one thread and on all, temperature "
        f"{results['meta']['temperature']}: the draw, and the backward of ReinMax's anchor term "
        "and of GR-MCK's conditional Gumbel anchor (one draw; its noise comes from PyTorch's "
        "generator, outside the kernels).\n\n"
        + _table(["dtype", "rows x K", "threads", *kernels], rows)
        + f"\n\nProduced by `python benchmarks/kernels.py` (torch {results['meta']['torch']})."
    )


def svi_kernels_section() -> str:
    results = _load(RESULTS / "svi_kernels-cpu.json")
    if results is None:
        return _missing("python benchmarks/svi_kernels.py")
    rows = [
        [
            r["backend"],
            r["model"],
            r["method"],
            f"{r['on_ms']:.3g}",
            f"{r['off_ms']:.3g}",
            f"{r['off_over_on']:.2f}",
        ]
        for r in results["rows"]
    ]
    return (
        "Milliseconds per SVI step of each `reinmax-compare` model with the CPU kernels on and "
        f"off, medians of {results['meta']['rounds']} interleaved fits from the same start, each "
        "in a fresh process (NumPyro's steps under `jit`). Above 1, the kernels pay.\n\n"
        + _table(["backend", "model", "method", "on (ms)", "off (ms)", "off / on"], rows)
        + f"\n\nProduced by `{results['meta']['command']}`."
    )


def gradient_section() -> str:
    results = _load(RESULTS / "gradient_quality.json")
    if results is None:
        return _missing("python benchmarks/gradient_quality.py")
    budget, replicates = results["meta"]["budget"], results["meta"]["replicates"]
    blocks = []
    for problem in results["problems"]:
        rows = []
        for estimator, s in problem["estimators"].items():
            base = problem["estimators"]["ReinMax tau=1"]
            jax_row = s.get("jax")

            rows.append(
                [
                    estimator,
                    f"{s['relative_bias']:.3f} ± {s['relative_bias_se']:.3f}",
                    f"{s['bias_noise_floor']:.3f}",
                    f"{s['relative_variance']:.3f}",
                    f"{s['relative_mse']:.3f} ± {s['relative_mse_se']:.3f}",
                    "-" if jax_row is None else f"{jax_row['relative_mse']:.3f}",
                    f"{s['cosine']:.3f}",
                    _relative_cost(s, base),
                    "-" if jax_row is None else _relative_cost(jax_row, base["jax"]),
                ]
            )
        header = [
            "estimator",
            "relative bias",
            "noise floor",
            "relative variance",
            "relative MSE",
            "relative MSE (JAX)",
            "cosine",
            "cost x ReinMax",
            "cost x ReinMax (JAX)",
        ]
        blocks.append(f"**{problem['problem']}**\n\n" + _table(header, rows))
    return (
        f"{budget} evaluations of f per estimate, {replicates} estimates; standard errors from 20 "
        "batches. "
        "A bias below the noise floor cannot be told from zero. Statistics from torch, the MSE "
        "also from JAX (same problems, independent draws); cost: time per estimate (sample, "
        f"{budget} evaluations, backward) relative to ReinMax tau=1 in the same backend, medians "
        "of interleaved rounds.\n\n"
        + "\n\n".join(blocks)
        + "\n\nProduced by `python benchmarks/gradient_quality.py`."
    )


def polynomial_section() -> str:
    results = _load(RESULTS / "polynomial.json")
    if results is None:
        return _missing("python benchmarks/polynomial.py")
    config = results["config"]
    estimators = list(dict.fromkeys(r["estimator"] for r in results["runs"]))
    rows = []
    for p in (1.5, 2.0, 3.0):
        runs = {r["estimator"]: r for r in results["runs"] if r["p"] == p}
        ranked = sorted(estimators, key=lambda e: runs[e]["final_mean"])
        cells = [
            f"{runs[e]['final_mean']:.4f} ± {runs[e]['final_std']:.1e} ({ranked.index(e) + 1})"
            for e in estimators
        ]
        rows.append([str(p), f"{0.45**p:.4f}", *cells])
    return (
        f"Final expected loss ± sd over {config['seeds']} seeds (rank), {config['steps']} steps, "
        f"Adam {config['lr']}, "
        f"temperature {config['temperature']}:\n\n"
        + _table(["p", "optimum 0.45^p", *estimators], rows)
        + "\n\n![polynomial programming](../benchmarks/results/polynomial.png)\n\n"
        f"Produced by `python benchmarks/polynomial.py --steps {config['steps']} "
        f"--seeds {config['seeds']}` with the estimators of its time, then "
        "`python benchmarks/polynomial.py --estimators GST-1.0 --merge` and "
        "`python benchmarks/polynomial.py --estimators GR-MCK,ReinMax-Rao,ReinMax-CV --merge` "
        "(10 conditional draws each; 40 min for the three on this 2-core CPU). Every estimator "
        "runs at the experiment's temperature; the paper's tuned baseline settings are known for "
        "its VAE, not for this experiment."
    )


def vae_paper_section() -> str:
    results = _load(RESULTS / "vae_paper.json")
    if results is None:
        return _missing("python benchmarks/vae_paper.py")
    meta, summary = results["meta"], results["summary"]
    configs = list(dict.fromkeys(k.split("/")[0] for k in summary))
    estimators = list(dict.fromkeys(k.split("/")[1] for k in summary))
    added = [c for c in configs if f"{c}/GST-1.0" in summary]  # configs run with --merge
    rows = []
    for config in configs:
        run = [e for e in estimators if f"{config}/{e}" in summary]
        ranked = sorted(run, key=lambda e: summary[f"{config}/{e}"]["mean"])
        cells = [
            f"{summary[f'{config}/{e}']['mean']:.2f} ± {summary[f'{config}/{e}']['std']:.2f} "
            f"({ranked.index(e) + 1})"
            if e in run
            else "not run"
            for e in estimators
        ]
        rows.append([config, *cells])
    return (
        f"Training -ELBO ± sd over seeds (nats per digit, lower is better; rank), "
        f"{meta['digits']} MNIST digits, "
        f"{meta['epochs']} epochs of {meta['digits'] // meta['batch']} steps (the paper: 160 "
        f"epochs on 60,000), {meta['seeds']} seeds. GST-1.0 and GR-MCK (100 conditional draws) "
        "use the paper's own tuned optimiser, learning rate and temperature per configuration; "
        "every other estimator uses ReinMax's (the paper tuned ST and ST-Gumbel separately). "
        "ReinMax-Rao and ReinMax-CV run at their package defaults (10 draws; eta 1). RLOO uses two "
        "decoder evaluations per digit, the others one.\n\n"
        + _table(["categories x latents", *estimators], rows)
        + "\n\nProduced by `python benchmarks/vae_paper.py --epochs 40 --seeds 3` with the "
        "estimators of its time, then `python benchmarks/vae_paper.py --estimators "
        "GST-1.0,GR-MCK,ReinMax-Rao,ReinMax-CV --merge` with `--configs 8x4,4x24`, then with "
        "`--configs 8x16,16x12,64x8,10x30`"
        + ("" if added == configs else f" (only {', '.join(added)} have them here)")
        + "."
    )


def scaling_section() -> str:
    blocks = []
    for backend in ("pyro", "numpyro"):
        command = "python benchmarks/svi_scaling.py" + (
            " --backend numpyro" if backend == "numpyro" else ""
        )
        results = _load(RESULTS / f"svi_scaling-{backend}-cpu.json")
        if results is None:
            blocks.append(f"**{backend}**: " + _missing(command))
            continue
        blocks.append(_scaling_tables(backend, results) + f"\n\nProduced by `{command}`.")
    return "\n\n".join(blocks) + "\n\nNo GPU in these runs: the GPU rows were not measured."


def _scaling_tables(backend: str, results: dict) -> str:
    step = "jitted SVI step" if backend == "numpyro" else "SVI step"
    blocks = []
    for kind, label in (("mixture", "K x D"), ("coupled", "M (4^M joint configurations)")):
        records = [r for r in results["records"] if r["kind"] == kind]
        sizes = list(dict.fromkeys(tuple(r["size"]) for r in records))
        rows = []
        for size in sizes:
            cells = []
            for method in ("reinmax", "enum", "reinforce"):
                r = next(r for r in records if tuple(r["size"]) == size and r["method"] == method)
                cells.append(
                    "infeasible"
                    if r.get("infeasible")
                    else f"{_milliseconds(r['seconds'])} ({r['peak_gb']:.2f} GB)"
                )
            name = (
                f"{size[0]} x {size[1]}" if kind == "mixture" else f"{size[0]} ({4 ** size[0]:,})"
            )
            rows.append([name, *cells])
        title = "Mixtures" if kind == "mixture" else "Coupled latents (enumeration multiplies)"
        reasons = dict.fromkeys(
            r["infeasible"] for r in records if isinstance(r.get("infeasible"), str)
        )
        blocks.append(
            f"**{backend}, {title}**, {results['meta']['points']} points, median time per {step} "
            "(peak memory of the process)\n\n"
            + _table([label, "reinmax", "enum", "reinforce"], rows)
            + "".join(f"\n\ninfeasible: {reason}." for reason in reasons)
        )
    return "\n\n".join(blocks)


def formulation_section() -> str:
    results = _load(RESULTS / "mixture_formulation.json")
    if results is None:
        return _missing("python benchmarks/mixture_formulation.py")
    rows = []
    for key, values in results["log_likelihood"].items():
        rows.append(
            [key, f"{statistics.fmean(values):.1f}", f"{min(values):.1f}", f"{max(values):.1f}"]
        )
    return (
        f"Old Faithful, 2 components, {results['steps']} steps, {len(results['seeds'])} seeds: "
        "exact log-likelihood\n\n"
        + _table(["method (form)", "mean", "min", "max"], rows)
        + "\n\nProduced by `python benchmarks/mixture_formulation.py`."
    )


def local_enum_cost_section() -> str:
    results = _load(RESULTS / "local_enum_cost-cpu.json")
    if results is None:
        return _missing("python benchmarks/local_enum_cost.py")
    rows = [
        [
            row["model"],
            row["backend"],
            f"{row['ms_per_step']['reinmax']:.2f}",
            f"{row['ms_per_step']['reinmax-local']:.2f}",
            f"{row['ratio']:.2f}",
        ]
        for row in results["rows"]
    ]
    header = ["model", "backend", "TraceMeanField_ELBO ms", "TraceLocalEnum_ELBO ms", "ratio"]
    return (
        f"ms per SVI step with the same ReinMax guide, median of {results['rounds']} interleaved "
        f"rounds of {results['steps']} steps\n\n"
        + _table(header, rows)
        + "\n\nProduced by `python benchmarks/local_enum_cost.py`."
    )


def local_enum_scaling_section() -> str:
    results = _load(RESULTS / "local_enum_scaling-cpu.json")
    if results is None:
        return _missing("python benchmarks/local_enum_scaling.py")
    methods = ["local", "local, all summed out", "mean field", "enumeration", "exact (log_density)"]
    rows = []
    for row in results["rows"]:
        ms = row["ms_per_step"]
        cells = [f"{ms[m]:.3g}" if m in ms else "" for m in methods]
        rows.append([row["backend"], row["family"], str(row["size"]), *cells])
    header = ["backend", "model", "size", "TraceLocalEnum_ELBO", "the same, all summed out"]
    header += ["TraceMeanField_ELBO", "TraceEnum_ELBO", "exact (funsor log_density)"]
    return (
        f"ms per SVI step, median of {results['rounds']} interleaved rounds (NumPyro jitted, "
        "compilation excluded). `chain`: T integer sites of 3 states (Pyro: a plain loop; NumPyro: "
        "`scan`); `parents`: one observation per datum depending on m 4-category sites; `hmm`: "
        "NumPyro's `hmm_enum.py` model 1 (16 states) with every state summed out. NumPyro's "
        "`TraceEnum_ELBO` returns a wrong value with `scan` (its column is the reference the "
        "cost target names); funsor's `log_density` computes the exact one.\n\n"
        + _table(header, rows)
        + "\n\n![cost against size](../benchmarks/results/local_enum_scaling-cpu.png)\n\n"
        "Produced by `python benchmarks/local_enum_scaling.py`."
    )


def local_enum_estimators_section() -> str:
    results = _load(RESULTS / "local_enum_estimators.json")
    if results is None:
        return _missing("python benchmarks/local_enum_estimators.py")
    rows = [
        [
            row["model"],
            f"{row['variance']['reinmax']:.4g}",
            f"{row['variance']['straight_through']:.4g}",
            f"{row['ratio']:.2f}",
            f"{row['mean_squared_standardised_difference']:.2f}",
        ]
        for row in results["rows"]
    ]
    header = ["model", "ReinMax", "straight-through", "ratio ST / ReinMax"]
    header += ["mean (difference / s.e.)^2"]
    return (
        "Total variance (trace of the covariance) of the guide-parameter gradient under "
        f"`TraceLocalEnum_ELBO`, over {results['draws']} draws at the same guide parameters, "
        "temperature 1; the last column is about 1 where both estimate the same gradient (both "
        "are unbiased there)\n\n"
        + _table(header, rows)
        + "\n\nProduced by `python benchmarks/local_enum_estimators.py`."
    )


def structured_hmm_section(backend: str = "pyro") -> str:
    name = "structured_hmm.json" if backend == "pyro" else f"structured_hmm-{backend}.json"
    command = "python benchmarks/structured_hmm.py" + (
        "" if backend == "pyro" else f" --backend {backend}"
    )
    results = _load(RESULTS / name)
    if results is None:
        return _missing(command)
    methods = list(dict.fromkeys(run["method"] for run in results["runs"]))
    steps = [point["step"] for point in results["runs"][0]["curve"]]
    rows = []
    for method in methods:
        curves = [run["curve"] for run in results["runs"] if run["method"] == method]
        cells = []
        for i in range(len(steps)):
            gaps = sorted(curve[i]["gap"] for curve in curves)
            cells.append(f"{gaps[len(gaps) // 2]:.2f} [{gaps[0]:.2f}, {gaps[-1]:.2f}]")
        seconds = sum(curve[-1]["seconds"] for curve in curves) / len(curves)
        rows.append([method, *cells, f"{1000 * seconds / results['steps']:.1f}"])
    header = ["method", *(f"step {step}" for step in steps), "ms per step"]
    model = "sticky_hmm_pyro" if backend == "pyro" else "sticky_hmm_numpyro"
    timing = (
        "one CPU thread (OMP_NUM_THREADS=1, the machine shared with other work: times are "
        "indicative)"
        if backend == "pyro"
        else "the jitted step timed after its compilation, one CPU thread"
    )
    return (
        f"The sticky hidden Markov chain of `reinmax_examples.{model}` (30 steps, 3 states; log "
        f"evidence {results['evidence']:.2f} nats), {backend}: the ELBO's gap to the log "
        "evidence in nats (median [min, max] over "
        f"{results['seeds']} seeds, 2,000 particles; lower is better), same start for every "
        f"method, {timing}\n\n"
        + _table(header, rows)
        + f"\n\n![gap against steps and seconds](../benchmarks/results/{name[:-5]}.png)"
        + f"\n\nProduced by `{command}`."
    )


def structured_cjs_section(backend: str = "pyro") -> str:
    name = "structured_cjs.json" if backend == "pyro" else f"structured_cjs-{backend}.json"
    command = "python benchmarks/structured_cjs.py" + (
        "" if backend == "pyro" else f" --backend {backend}"
    )
    results = _load(RESULTS / name)
    if results is None:
        return _missing(command)
    rows = [
        [
            run["method"],
            str(run["seed"]),
            f"{run['loss']:.2f}",
            f"{run['gap']:.2f}",
            f"{run['estimates'].get('phi', float('nan')):.3f}",
            f"{run['estimates'].get('rho', float('nan')):.3f}",
            f"{1000 * run['seconds_per_step']:.1f}",
        ]
        for run in results["runs"]
    ]
    header = ["method", "seed", "-ELBO", "gap to enum", "phi", "rho", "ms per step"]
    written = (
        "Pyro's capture-recapture `model_1` as written (`reinmax_examples.cjs_pyro`"
        if backend == "pyro"
        else "The same model ported to NumPyro as a Pyro user would (`reinmax_examples.cjs_numpyro`"
        "; it masks each occasion before the first capture, where Pyro's example, updating its "
        "mask in place after use, scores every occasion with the final mask: the -ELBOs of the "
        "two backends differ, `tests/test_capture_recapture.py`), jitted. Here the gap to `enum` "
        "is not a gap: a masked state still has a guide site, whose entropy (up to log 2 nats "
        "each) enters the sampled guides' ELBO, while NumPyro's `TraceEnum_ELBO` adds nothing "
        "for a masked summed-out state (a hand computation in that test shows it keeps the "
        "state's prior); compare the sampled guides with each other, and the "
        "fitted probabilities with `enum`'s"
    )
    return (
        f"{written}: 60 animals, 7 occasions, generated), {results['steps']} steps of Adam (lr "
        f"{results['lr']}), survival `phi` and recapture `rho` as point estimates; -ELBO exact "
        "for `enum`, 1,000 particles for the sampled guides (lower is better), one CPU thread\n\n"
        + _table(header, rows)
        + f"\n\nProduced by `{command}`."
    )


def fhmm_chains_section(figure: bool = True) -> str:
    summary = _load(RESULTS / "fhmm_chains" / "summary.json")
    if summary is None:
        return _missing("python benchmarks/fhmm_chains.py")
    methods = list(dict.fromkeys(m for row in summary["rows"] for m in row["metric"]))
    rows = []
    for row in summary["rows"]:
        cells = []
        for method in methods:
            metric, reached = row["metric"].get(method), row["seconds_to_tie"].get(method)
            if method in row["skipped"] or metric is None:
                cells.append("not run" if method in row["skipped"] else "failed")
                continue
            when = "never" if reached is None else f"{reached:.0f} s"
            cells.append(f"{metric:.3f} ({when})")
        rows.append([str(row["chains"]), f"{4 ** row['chains']:,}", *cells])
    return (
        f"Held-out log-likelihood per step at the end of {summary['steps']} steps (Pyro, "
        f"sequences of 10 steps, {summary['seeds']} seed), and in parentheses the training "
        f"seconds from which the method stays within {summary['tie']} of that M's best: exact "
        "up to 8 chains, a particle filter's estimate (20,000 particles) beyond. Not run past "
        "4,096 joint states per step (M = 6): exact enumeration, and the hybrid, whose default "
        "budget still sums 6 chains out there and pays for contracting them over time. One "
        "CPU core per run.\n\n"
        + _table(["chains M", "joint states per step", *methods], rows)
        + (
            "\n\n![time to the tie against the number of chains]"
            "(../benchmarks/results/fhmm_chains.png)"
            if figure
            else ""
        )
        + "\n\nProduced by `python benchmarks/fhmm_chains.py` (each M's run, with its curves, in "
        "`benchmarks/results/fhmm_chains/M<M>/`)."
    )


def data_parallel_section() -> str:
    blocks = []
    for device in ("cpu", "cuda"):
        results = _load(RESULTS / f"data_parallel-{device}.json")
        if results is None:
            if device == "cpu":
                blocks.append(_missing("python benchmarks/data_parallel.py"))
            else:
                blocks.append(
                    "Not measured on GPUs: no GPU was lent to the session that built this "
                    "(`python benchmarks/data_parallel.py --device cuda --counts 1,2,...`)."
                )
            continue
        where = results["meta"].get("gpu", f"{results['meta']['device']}, 2 cores")
        blocks.append(
            f"**{where}**: data points per second of training (digits for the VAE, tokens for "
            f"LDA), median of {results['meta']['rounds']} interleaved runs; the metric (higher is "
            "better) beside it, and its spread over seeds on one process or device\n\n"
            + _table(HEADER, table_rows(results["records"]))
            + f"\n\nProduced by `{results['meta']['command'].strip()}`."
        )
    return "\n\n".join(blocks)


def results_page() -> str:
    return (
        "\n\n".join(
            [
                "# Results\n\nGenerated by `python docs/build.py` from the JSON files in "
                "`benchmarks/results/` and `docs/results/`; each section names the command that "
                "produced its numbers. CPU: 2 cores. Compare estimators within one table only.",
                "## reinmax-compare: the example models, both backends\n\n" + compare_section(),
                "## Speed: sample + backward\n\n" + speed_section(),
                "## Speed on a GPU\n\nOne run on the GPU machine lent to this project (an NVIDIA "
                "H200, as `nvidia-smi` reported it; float32 only).\n\n"
                + speed_section(device="cuda"),
                "## Small sizes: the price of a Python autograd.Function\n\n"
                + eager_floor_section(),
                "## The CPU kernels, one by one\n\n" + kernels_section(),
                "## The CPU kernels in a whole SVI step\n\n" + svi_kernels_section(),
                "## Gradient quality against exact gradients\n\n" + gradient_section(),
                "## Cost of an SVI step as the problem grows\n\n" + scaling_section(),
                "## The paper's polynomial programming\n\n" + polynomial_section(),
                "## The paper's categorical VAE\n\n" + vae_paper_section(),
                "## Mixture formulation\n\n" + formulation_section(),
                "## The cost of TraceLocalEnum_ELBO\n\n" + local_enum_cost_section(),
                "## TraceLocalEnum_ELBO as models grow\n\n" + local_enum_scaling_section(),
                "## Which estimator under TraceLocalEnum_ELBO\n\n"
                + local_enum_estimators_section(),
                "## Guides that follow the model: a sticky chain\n\n"
                + structured_hmm_section()
                + "\n\n"
                + structured_hmm_section("numpyro"),
                "## Guides that follow the model: an absorbing chain\n\n"
                + structured_cjs_section()
                + "\n\n"
                + structured_cjs_section("numpyro"),
                "## Where enumeration stops: the factorial HMM, 2 to 12 chains\n\n"
                + fhmm_chains_section(),
                "## Several processes and devices\n\n" + data_parallel_section(),
            ]
        )
        + "\n"
    )


def readme_section() -> str:
    return (
        "### Where enumeration stops: the factorial HMM, 2 to 12 chains\n\n"
        + fhmm_chains_section(figure=False)
        + "\n\nEvery other table and figure, with the command that made it: "
        "[docs/results.md](docs/results.md)."
    )


def main() -> None:
    (ROOT / "docs" / "results.md").write_text(results_page())
    readme = ROOT / "README.md"
    text = readme.read_text()
    pattern = re.compile(r"(<!-- results:start -->\n).*?(<!-- results:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit("README.md has no <!-- results:start --> ... <!-- results:end --> markers")
    readme.write_text(
        pattern.sub(lambda m: m.group(1) + readme_section() + "\n" + m.group(2), text)
    )
    print("wrote docs/results.md and the results section of README.md")


if __name__ == "__main__":
    main()
