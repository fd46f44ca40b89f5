"""``reinmax-compare``: fit one model by every method, compare the ELBO curves and one exact metric.

    reinmax-compare MODEL [--backend pyro|numpyro]
                          [--methods reinmax,reinmax-local,hybrid,enum,reinforce,st,st-gumbel]
                          (also st-local, gst, gumbel-rao, reinmax-rao, reinmax-cv, rloo, disarm,
                           gumbel-softmax)
                          [--steps N] [--seeds S] [--lr LR] [--temperature T] [--device cpu|cuda]
                          [--processes N (pyro) | --devices N (numpyro)] [--out DIR [--add]]

MODEL is ``gmm`` (Gaussian mixture on iris), ``lda`` (topic model on the Lee corpus), ``vae``
(categorical VAE on MNIST digits), ``fhmm`` (factorial HMM on a documented synthetic set),
``sbn`` (sigmoid belief network on binarised digits) or ``regimes`` (a regime-switching chain of
200 integer sites in a plain loop, where enumeration fails; Pyro only).
Every method trains the same model from the same start for each seed; the metric is computed
identically for every method and is exact, never the training objective. Writes ``results.json``
and ``elbo.png`` (and the model's own reports) into ``--out`` (default a new folder under
``./runs/``). Ctrl-C keeps what was measured so far. ``--add`` trains only ``--methods`` and adds
them to the run already in ``--out`` (same model and settings), so a comparison grows without
training its other methods again.

``vae`` and ``lda`` also train on several processes (Pyro: ``--processes N``, DDP, or under
``torchrun``) or devices (NumPyro: ``--devices N``, the data sharded under ``jit``), with the same
data per step as on one (``parallel.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reinmax_examples.artefacts import (
    KNOWN_FILES,
    load_results,
    prepare_output,
    save_figure,
    write_json,
)
from reinmax_examples.defaults import defaults_help
from reinmax_examples.methods import (
    CHECKPOINTS,
    DEFAULT_METHODS,
    METHOD_COLOURS,
    METHODS,
    ConfigurationError,
    checkpoint_steps,
    probing_gradients,
)
from reinmax_examples.parallel import SINGLE, DataParallel

MODELS = ("gmm", "lda", "vae", "fhmm", "sbn", "regimes")
BERNOULLI_MODELS = {"sbn"}
"""The models whose discrete latents are Bernoulli (DisARM's sites); the others are one-hot."""
MODEL_OPTIONS = {
    "gmm": {"dataset", "data", "components"},
    "lda": {"data", "topics"},
    "vae": {"dataset", "data", "latent"},
    "fhmm": {"chains", "length"},
    "sbn": {"dataset"},
    "regimes": {"length"},
}
PYRO_ONLY_MODELS = {
    "regimes": "its point is a plain loop of 200 sites, which jit would compile as one unrolled "
    "program for minutes (NumPyro's answer to long chains is scan, which the fhmm model uses)"
}
BACKENDS = ("pyro", "numpyro")
PARALLEL_MODELS = ("vae", "lda")
"""The models that train on several processes (``--processes``) or devices (``--devices``)."""


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}"
        )
    return list(dict.fromkeys(methods))


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reinmax-compare",
        epilog=defaults_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit a model with discrete latents by ReinMax, exact enumeration, REINFORCE, "
        "straight-through and ST-Gumbel; compare ELBO curves and an exact metric.",
    )
    p.add_argument("model", choices=MODELS)
    p.add_argument("--backend", choices=BACKENDS, default="pyro")
    p.add_argument(
        "--methods",
        type=_methods,
        default=list(DEFAULT_METHODS),
        help=f"comma-separated, from {', '.join(METHODS)} (default: {','.join(DEFAULT_METHODS)})",
    )
    p.add_argument("--steps", type=_positive(int), help="SVI steps (default: the model's)")
    p.add_argument("--seeds", type=_positive(int), default=1, help="seeds 0..S-1 (default 1)")
    p.add_argument("--lr", type=_positive(float), help="Adam learning rate (default: the model's)")
    p.add_argument(
        "--temperature",
        type=_positive(float),
        help="estimator temperature for every method (default: the model's; vae: each method's "
        "recommended settings, the authors' tuned ones for st, st-gumbel, gst and gumbel-rao)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--processes",
        type=_positive(int),
        default=1,
        help="pyro, vae and lda: train on N processes with DistributedDataParallel (gloo on CPU, "
        "NCCL with one GPU each on cuda); rank 0 writes the results (default 1)",
    )
    p.add_argument(
        "--devices",
        type=_positive(int),
        default=1,
        help="numpyro, vae and lda: shard each step's data over N devices under jit (on a CPU, N "
        "host devices) (default 1)",
    )
    p.add_argument("--out", type=Path, help="output folder (default runs/MODEL-BACKEND-TIME)")
    p.add_argument(
        "--add",
        action="store_true",
        help="add --methods to the run already in --out: train only those (a method it has is "
        "trained again) with the same settings, keep its other methods and its model report",
    )
    p.add_argument(
        "--dataset", help="gmm: iris or wine; vae: mnist or digits; sbn: digits or mnist"
    )
    p.add_argument(
        "--data",
        type=Path,
        help="your own data instead of a shipped set: gmm: a .npy or .csv matrix (one row per "
        "point, standardised here); vae: the same, values in [0, 1]; lda: a text file with one "
        "document per line, or a folder of .txt files",
    )
    p.add_argument("--components", type=_positive(int), help="gmm: mixture components (3)")
    p.add_argument("--topics", type=_positive(int), help="lda: topics (8)")
    p.add_argument("--latent", help="vae: categories x latents, e.g. 8x4 (the paper's settings)")
    p.add_argument("--chains", type=_positive(int), help="fhmm: chains of 4 states (3)")
    p.add_argument(
        "--length", type=_positive(int), help="fhmm: time steps per sequence (20); regimes (200)"
    )
    p.add_argument(
        "--checkpoints",
        type=_positive(int),
        default=CHECKPOINTS,
        help=f"times the exact metric is computed during training, the last at the end "
        f"(default {CHECKPOINTS}; its time is not counted as training time)",
    )
    return p


def _load(model: str, backend: str):
    return importlib.import_module(f"reinmax_examples.{model}_{backend}")


def _check_device(device: str, backend: str) -> None:
    if device != "cuda":
        return
    if backend == "pyro":
        import torch

        available = torch.cuda.is_available()
    else:
        import jax

        available = any(d.platform == "gpu" for d in jax.devices())
    if not available:
        raise SystemExit(f"--device cuda: no GPU is visible to {backend}.")


def _summarise(runs: list[dict]) -> dict:
    """Mean curves over seeds (equal length), and the metric's mean and spread."""
    finished = [r for r in runs if r.get("metric") is not None]
    complete = [r for r in runs if len(r["elbo"]) == len(runs[0]["elbo"])]
    summary = {
        "step": runs[0]["step"],
        "elbo": [statistics.fmean(v) for v in zip(*(r["elbo"] for r in complete), strict=True)],
        "seconds": [
            statistics.fmean(v) for v in zip(*(r["seconds"] for r in complete), strict=True)
        ],
        "metric": statistics.fmean(r["metric"] for r in finished) if finished else None,
        "metric_curve": _mean_curve([r["metric_curve"] for r in finished if "metric_curve" in r]),
        "gradient_spread": _mean_spread(
            [r["gradient_spread"] for r in finished if r.get("gradient_spread", {}).get("step")]
        ),
        "metric_std": statistics.stdev([r["metric"] for r in finished])
        if len(finished) > 1
        else 0.0,
        "per_seed": runs,
    }
    compile_seconds = [r["compile_seconds"] for r in runs if r.get("compile_seconds") is not None]
    if compile_seconds:
        summary["compile_seconds"] = statistics.fmean(compile_seconds)
    if len(complete) > 1:
        summary["elbo_min"] = [min(v) for v in zip(*(r["elbo"] for r in complete), strict=True)]
        summary["elbo_max"] = [max(v) for v in zip(*(r["elbo"] for r in complete), strict=True)]
    return summary


def _mean_curve(curves: list[dict]) -> dict:
    """The metric against steps and seconds, averaged over seeds (curves of equal length)."""
    curves = [c for c in curves if len(c["step"]) == len(curves[0]["step"])]
    if not curves:
        return {"step": [], "seconds": [], "metric": []}
    return {
        key: [statistics.fmean(v) for v in zip(*(c[key] for c in curves), strict=True)]
        for key in ("step", "seconds", "metric")
    }


def _mean_spread(spreads: list[dict]) -> dict:
    """The guide gradient's spread at each checkpoint, averaged over seeds (equal checkpoints)."""
    spreads = [s for s in spreads if s["step"] == spreads[0]["step"]] if spreads else []
    if not spreads:
        return {"step": [], "variance": [], "relative": []}

    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else None

    return {
        "step": spreads[0]["step"],
        **{
            key: [mean(v) for v in zip(*(s[key] for s in spreads), strict=True)]
            for key in ("variance", "relative")
        },
    }


def plot_gradients(results: dict, path: Path) -> bool:
    """The relative variance of the guide parameters' gradient at each checkpoint, per method
    (fresh draws at fixed parameters); False if none was recorded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spreads = {
        m: r["gradient_spread"]
        for m, r in results["methods"].items()
        if r.get("gradient_spread", {}).get("step")
    }
    if not spreads:
        return False
    figure, axis = plt.subplots(figsize=(6, 4))
    for method, spread in spreads.items():
        points = [(s, v) for s, v in zip(spread["step"], spread["relative"], strict=True) if v]
        if points:
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, marker="o", label=method, color=METHOD_COLOURS.get(method))
    axis.set(
        xlabel="SVI step",
        ylabel="trace of the gradient's covariance / |mean gradient|^2",
        yscale="log",
        title=f"{results['model']} ({results['backend']}): the guide gradient's spread",
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
    plt.close(figure)
    return True


def first_to_reach(results: dict) -> str | None:
    """Which method's mean metric curve first comes within the model's tie of the best final
    metric and stays there to the end, in training seconds, and when the others do (or that they
    never do)."""
    curves = {
        m: r["metric_curve"]
        for m, r in results["methods"].items()
        if r.get("metric") is not None and r.get("metric_curve", {}).get("metric")
    }
    if len(curves) < 2:
        return None
    target = max(r["metric"] for r in results["methods"].values() if r.get("metric") is not None)
    target -= results["tie"]
    reached = {}
    for method, curve in curves.items():
        since = None
        for seconds, value in zip(curve["seconds"], curve["metric"], strict=True):
            since = (seconds if since is None else since) if value >= target else None
        if since is not None:
            reached[method] = since
    if not reached:
        return None
    order = sorted(reached, key=reached.get)
    first = order[0]
    others = ", ".join(f"{m} {reached[m]:.3g} s" for m in order[1:])
    never = [m for m in curves if m not in reached]
    line = (
        f"First within {results['tie']:g} of the best {results['metric_name']} to the end: "
        f"{first}, from {reached[first]:.3g} s of training"
    )
    line += f" (then {others})" if others else ""
    line += f"; not within it at the end: {', '.join(never)}." if never else "."
    return line


def verdict(results: dict) -> str:
    """Which method is best on the exact metric, and where ReinMax stands against enumeration
    (a tie: within the model's ``TIE`` tolerance on the metric)."""
    scored = {m: r["metric"] for m, r in results["methods"].items() if r.get("metric") is not None}
    if not scored:
        failed = [
            f"{m} failed: {r['failed']}" for m, r in results["methods"].items() if r.get("failed")
        ]
        return " ".join(["No method finished.", *failed])
    best = max(scored, key=scored.get)
    lines = [f"Best {results['metric_name']}: {best} ({scored[best]:.2f})."]
    if "enum" in scored and "reinmax" in scored:
        gap, tie = scored["reinmax"] - scored["enum"], results["tie"]
        if gap < -tie:
            lines.append(
                f"Exact enumeration is cheap here and wins: ReinMax is {-gap:.2f} below it. "
                "ReinMax pays off where enumeration is expensive or impossible."
            )
        elif gap <= tie:
            lines.append(f"ReinMax ties exact enumeration ({gap:+.2f}), which is cheap here.")
        else:
            lines.append(f"ReinMax is {gap:.2f} above exact enumeration on this metric.")
    first = first_to_reach(results)
    if first:
        lines.append(first)
    skipped = {m: r["skipped"] for m, r in results["methods"].items() if r.get("skipped")}
    lines += [f"{m} was not run: {why}" for m, why in skipped.items()]
    failed = {m: r["failed"] for m, r in results["methods"].items() if r.get("failed")}
    lines += [f"{m} failed: {why}" for m, why in failed.items()]
    if results.get("report_error"):
        lines.append(f"The report failed: {results['report_error']}")
    if results.get("interrupted"):
        lines.append("Interrupted: these are the results measured before the interrupt.")
    return " ".join(lines)


def _band_label(results: dict) -> str:
    """What a curve is: the mean over seeds (with a min-max band) only when there are several."""
    seeds = results["config"]["seeds"]
    return f"mean over {seeds} seeds; band: min to max" if seeds > 1 else "one seed"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    values = []
    for method, r in results["methods"].items():
        if not r.get("elbo"):
            continue
        colour = METHOD_COLOURS.get(method)
        for axis, x in zip(axes, (r["step"], r["seconds"]), strict=True):
            axis.plot(x, r["elbo"], label=method, color=colour)
            if "elbo_min" in r:
                axis.fill_between(x, r["elbo_min"], r["elbo_max"], color=colour, alpha=0.2)
        values += r["elbo"][len(r["elbo"]) // 10 :]
    finite = sorted(v for v in values if math.isfinite(v))
    if finite:
        low, high = finite[len(finite) // 20], finite[-1]
        margin = 0.05 * (high - low) or 1.0
        axes[0].set_ylim(low - margin, high + margin)
    axes[0].set(xlabel="SVI step", ylabel="ELBO estimate (nats, averaged between records)")
    axes[1].set(xlabel="training seconds (evaluations excluded)")
    axes[0].legend()
    figure.suptitle(
        f"{results['model']} ({results['backend']}): ELBO while training ({_band_label(results)})"
    )
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
    plt.close(figure)


def plot_metric(results: dict, path: Path) -> bool:
    """The exact metric against steps and wall-clock training seconds; False if none was
    recorded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {
        m: r["metric_curve"]
        for m, r in results["methods"].items()
        if r.get("metric_curve", {}).get("metric")
    }
    if not curves:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for method, curve in curves.items():
        for axis, x in zip(axes, (curve["step"], curve["seconds"]), strict=True):
            axis.plot(
                x,
                curve["metric"],
                marker="o",
                markersize=3,
                label=method,
                color=METHOD_COLOURS.get(method),
            )
    axes[0].set(xlabel="SVI step", ylabel=f"{results['metric_name']} ({results['metric_unit']})")
    axes[1].set(xlabel="training seconds (evaluations excluded)")
    axes[0].legend()
    figure.suptitle(
        f"{results['model']} ({results['backend']}): exact metric while training "
        f"({'mean over seeds' if results['config']['seeds'] > 1 else 'one seed'})"
    )
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
    plt.close(figure)
    return True


def table(results: dict) -> Table:
    title = (
        f"{results['model']} ({results['backend']}): {results['metric_name']} "
        f"({results['metric_unit']})"
    )
    compiled = any(r.get("compile_seconds") is not None for r in results["methods"].values())
    t = Table(title=title)
    columns = ["method", "metric", "final ELBO (nats)", "train seconds"]
    columns += ["compile seconds"] if compiled else []
    for column in [*columns, "note"]:
        t.add_column(column, justify="right")
    for method, r in results["methods"].items():
        if r.get("skipped"):
            t.add_row(method, *["-"] * (len(columns) - 1), "skipped")
            continue
        metric = "-" if r.get("metric") is None else f"{r['metric']:.2f}"
        if r.get("metric") is not None and r.get("metric_std"):
            metric += f" ± {r['metric_std']:.2f}"
        elbo = f"{r['elbo'][-1]:.2f}" if r.get("elbo") else "-"
        seconds = f"{r['seconds'][-1]:.1f}" if r.get("seconds") else "-"
        cells = [method, metric, elbo, seconds]
        if compiled:
            compile_seconds = r.get("compile_seconds")
            cells.append("-" if compile_seconds is None else f"{compile_seconds:.1f}")
        note = "failed" if r.get("failed") else ("exact" if method == "enum" else "")
        t.add_row(*cells, note)
    return t


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _parallel_skip_reason(method: str, parallel: DataParallel, backend: str) -> str | None:
    if parallel.active and backend == "pyro" and method == "reinforce":
        return (
            "Pyro's TraceGraph_ELBO has no differentiable loss for DistributedDataParallel; "
            "rloo is the unbiased estimator that runs on several processes"
        )
    return None


def run(args: argparse.Namespace, console: Console, parallel: DataParallel = SINGLE) -> dict:
    """Fit every method for every seed, writing ``results.json`` and the figures to ``--out``.
    A method that fails is recorded as failed and the others go on; an interrupt (Ctrl-C) stops
    training and writes what was measured (``results["interrupted"]``). On several ranks
    (``parallel``) every rank trains; rank 0 alone evaluates, reports and writes."""
    module = _load(args.model, args.backend)
    config = module.configure(args)
    out = args.out or Path("runs") / f"{args.model}-{args.backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    results = {
        "model": args.model,
        "backend": args.backend,
        "metric_name": module.METRIC,
        "metric_unit": module.METRIC_UNIT,
        "tie": module.TIE,
        "config": {
            "methods": args.methods,
            "seeds": args.seeds,
            "checkpoints": args.checkpoints,
            "processes": parallel.size if args.backend == "pyro" else 1,
            "devices": parallel.size if args.backend == "numpyro" else 1,
            **config,
        },
        "methods": {},
        "interrupted": False,
    }
    if args.add:
        results = _added_to(load_results(out), results)
    if parallel.leader:
        prepare_output(out, keep=args.add)
    runs: dict[str, list[dict]] = {m: [] for m in args.methods}
    parallel_option = {"parallel": parallel} if args.model in PARALLEL_MODELS else {}
    device = args.device
    if parallel.active and args.backend == "pyro":
        from reinmax_examples.ranks import device_of_rank

        device = device_of_rank(args.device)  # one GPU per rank
    failures: dict[str, str] = {}
    fitted: dict[str, object] = {}
    problem = None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            for seed in range(args.seeds):
                problem = module.Problem(config, seed=seed, device=device, **parallel_option)
                for method in args.methods:
                    reason = module.skip_reason(problem, method) or _parallel_skip_reason(
                        method, parallel, args.backend
                    )
                    if method == "disarm" and args.model not in BERNOULLI_MODELS:
                        reason = "DisARM is for Bernoulli sites and this model's are one-hot (rloo)"
                    if reason:
                        results["methods"][method] = {"skipped": reason, "metric": None, "elbo": []}
                        continue
                    if method in failures:
                        continue
                    task = progress.add_task(f"{method:>9} seed {seed}", total=config["steps"])
                    run_record = {
                        "seed": seed,
                        "step": [],
                        "elbo": [],
                        "seconds": [],
                        "metric": None,
                        "compile_seconds": None,
                        "metric_curve": {"step": [], "seconds": [], "metric": []},
                        "gradient_spread": {"step": [], "variance": [], "relative": []},
                    }
                    runs[method].append(run_record)

                    def on_gradients(step, measured, record=run_record):
                        spread = record["gradient_spread"]
                        spread["step"].append(step)
                        spread["variance"].append(measured["variance"])
                        spread["relative"].append(measured["relative"])

                    def on_step(step, elbo, seconds, record=run_record, task=task):
                        record["step"].append(step)
                        record["elbo"].append(float(elbo))
                        record["seconds"].append(float(seconds))
                        progress.update(task, completed=step)

                    def on_checkpoint(step, seconds, now, record=run_record, problem=problem):
                        curve = record["metric_curve"]
                        curve["step"].append(step)
                        curve["seconds"].append(float(seconds))
                        curve["metric"].append(float(module.evaluate(problem, now)["metric"]))

                    def on_compile(seconds, record=run_record):
                        record["compile_seconds"] = float(seconds)

                    marks = checkpoint_steps(config["steps"], args.checkpoints)
                    marks = marks if parallel.leader else set()
                    try:
                        with probing_gradients(on_gradients):
                            fitted[method] = module.fit(
                                problem,
                                method,
                                seed=seed,
                                config=config,
                                on_step=on_step,
                                on_checkpoint=on_checkpoint if marks else None,
                                checkpoints=marks,
                                on_compile=on_compile,
                            )
                        if not parallel.leader:
                            continue
                        run_record.update(module.evaluate(problem, fitted[method]))
                    except Exception as error:  # one method failing must not lose the others
                        failures[method] = _failure(error)
                        runs[method].pop()
                        fitted.pop(method, None)
                        progress.update(task, description=f"{method:>9} seed {seed} failed")
                        console.print(f"[red]{method} failed (seed {seed}): {failures[method]}")
                        _record_method(results, method, runs[method], failures)
                        continue
                    curve = run_record["metric_curve"]
                    curve["step"].append(config["steps"])
                    curve["seconds"].append(run_record["seconds"][-1])
                    curve["metric"].append(float(run_record["metric"]))
                    _record_method(results, method, runs[method], failures)
        report = hasattr(module, "report") and not args.add
        if report and fitted and problem is not None and parallel.leader:
            try:
                results["reports"] = module.report(problem, fitted, out)
            except Exception as error:  # the measurements are kept
                results["report_error"] = _failure(error)
                console.print(f"[red]report failed: {results['report_error']}")
    except KeyboardInterrupt:
        results["interrupted"] = True
        console.print("[yellow]Interrupted: writing what was measured so far.[/yellow]")
        for method, method_runs in runs.items():
            if method_runs and method_runs[0]["elbo"]:
                _record_method(results, method, method_runs, failures)
    if parallel.leader:
        _write(results, out, console)
    return results


def _added_to(previous: dict, results: dict) -> dict:
    """``previous`` (a ``results.json``) ready for ``results``' methods (``--add``): the same
    model, backend and settings, or a :class:`ConfigurationError` naming what differs. Settings
    that ``previous`` did not record (an older version wrote it) cannot differ; they are listed
    under ``"additions"`` with the methods added."""
    theirs = {**previous.get("config", {}), **{k: previous.get(k) for k in ("model", "backend")}}
    ours = {**results["config"], **{k: results[k] for k in ("model", "backend")}}
    ours = json.loads(json.dumps(ours))  # as results.json holds it (tuples as lists)
    added = ours.pop("methods")
    kept = theirs.pop("methods", [])
    differ = [
        f"{key} {theirs[key]!r} there, {ours.get(key)!r} here"
        for key in sorted(theirs)
        if ours.get(key) != theirs[key]
    ]
    if differ:
        raise ConfigurationError(
            f"--add: the run in --out has other settings ({'; '.join(differ)}); give the same "
            "options, or another --out"
        )
    if previous.get("metric_name", results["metric_name"]) != results["metric_name"]:
        raise ConfigurationError(
            f"--add: the run in --out measured {previous['metric_name']!r}, this version "
            f"{results['metric_name']!r}; add to a run of this version, or another --out"
        )
    descriptive = {k: results[k] for k in ("metric_name", "metric_unit", "tie")}
    merged = {**previous, **descriptive, "interrupted": False}
    merged.pop("report_error", None)
    merged["config"] = {**previous["config"], "methods": list(dict.fromkeys(kept + added))}
    merged["methods"] = {m: r for m, r in previous["methods"].items() if m not in added}
    unrecorded = {key: ours[key] for key in sorted(set(ours) - set(theirs))}
    merged["additions"] = [
        *previous.get("additions", []),
        {"methods": added, "settings_the_run_did_not_record": unrecorded},
    ]
    return merged


def _record_method(results: dict, method: str, method_runs: list[dict], failures: dict) -> None:
    """The method's summary over its finished runs, with its failure if it had one."""
    finished = [r for r in method_runs if r["elbo"]]
    entry = _summarise(finished) if finished else {"metric": None, "elbo": []}
    if method in failures:
        entry["failed"] = failures[method]
    results["methods"][method] = entry


def _write(results: dict, out: Path, console: Console) -> None:
    """``results.json`` and the figures, each written atomically; the table and the verdict."""
    results["verdict"] = verdict(results)
    written = ["results.json"]
    write_json(out / "results.json", results)  # first: the measurements, before any plotting
    plot(results, out / "elbo.png")
    written.append("elbo.png")
    if plot_metric(results, out / "metric.png"):
        written.append("metric.png")
    if plot_gradients(results, out / "gradients.png"):
        written.append("gradients.png")
    results["files"] = written + [
        name for name in KNOWN_FILES if name not in written and (out / name).is_file()
    ]
    write_json(out / "results.json", results)
    console.print(table(results))
    console.print(results["verdict"])
    for line in results.get("reports", []):
        console.print(line)
    console.print(f"wrote {', '.join(str(out / name) for name in results['files'])}")


def _check_parallel(command: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--processes`` is Pyro's, ``--devices`` NumPyro's, both for ``vae`` and ``lda``; NumPyro's
    host devices are made here, before JAX starts."""
    from reinmax_examples.ranks import launched_by_torchrun

    launched = launched_by_torchrun()
    if launched is not None and args.processes not in (1, launched.size):
        command.error(f"--processes {args.processes} under torchrun with {launched.size} ranks")
    for option, backend, count in (
        ("processes", "pyro", args.processes if launched is None else launched.size),
        ("devices", "numpyro", args.devices),
    ):
        if count == 1:
            continue
        if args.backend != backend:
            other = "--devices" if option == "processes" else "--processes"
            command.error(f"--{option} is for --backend {backend}; {args.backend} uses {other}")
        if args.model not in PARALLEL_MODELS:
            command.error(
                f"--{option}: {args.model} trains in one; --{option} is for "
                f"{' and '.join(PARALLEL_MODELS)}"
            )
    if launched is not None and args.backend == "numpyro":
        command.error("torchrun starts Pyro ranks; NumPyro uses --devices in one process")
    if args.devices > 1:
        import jax

        if args.device == "cpu":
            import numpyro

            numpyro.set_host_device_count(args.devices)
            numpyro.set_platform("cpu")
        available = len(jax.devices())
        if available < args.devices:
            command.error(f"--devices {args.devices}: JAX sees {available} device(s)")


@contextlib.contextmanager
def _ranks(args: argparse.Namespace, argv: list[str] | None):
    """This process's rank (Pyro, ``--processes`` or torchrun), or the NumPyro devices."""
    if args.backend == "numpyro":
        yield DataParallel(0, args.devices)
        return
    from reinmax_examples.ranks import ranks

    target = functools.partial(run_rank, sys.argv[1:] if argv is None else list(argv))
    with ranks(args.processes, args.device, target) as parallel:
        yield parallel


def run_rank(argv: list[str], parallel: DataParallel) -> None:
    """What a rank other than 0 runs: the same training, silently."""
    run(parser().parse_args(argv), Console(quiet=True), parallel)


def main(argv: list[str] | None = None) -> int:
    """The command: 0 on success, 1 if a method or the report failed (the others' results are
    written), 2 for a bad option, 130 when interrupted (what was measured is written)."""
    command = parser()
    args = command.parse_args(argv)
    foreign = [
        option
        for option in ("dataset", "data", "components", "topics", "latent", "chains", "length")
        if getattr(args, option) is not None and option not in MODEL_OPTIONS[args.model]
    ]
    if foreign:
        command.error(f"--{foreign[0]} does not apply to {args.model}")
    if args.add and args.out is None:
        command.error("--add needs --out, the folder of the run to add to")
    if args.backend != "pyro" and args.model in PYRO_ONLY_MODELS:
        command.error(f"{args.model} runs in Pyro only: {PYRO_ONLY_MODELS[args.model]}")
    _check_parallel(command, args)
    _check_device(args.device, args.backend)
    try:
        with _ranks(args, argv) as parallel:
            results = run(args, Console(quiet=not parallel.leader), parallel)
    except ConfigurationError as error:  # a bad model option (e.g. --latent)
        print(f"reinmax-compare: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # --out cannot be written
        print(f"reinmax-compare: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training started: nothing was measured
        print("reinmax-compare: interrupted before training; nothing was written.", file=sys.stderr)
        return 130
    if results["interrupted"]:
        print("reinmax-compare: interrupted; the results so far were written.", file=sys.stderr)
        return 130
    failed = [m for m, r in results["methods"].items() if r.get("failed")]
    if failed or results.get("report_error"):
        what = ", ".join(failed) + (" and the report" if results.get("report_error") else "")
        print(f"reinmax-compare: {what.lstrip(', ')} failed; see results.json.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
