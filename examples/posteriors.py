"""What the mixture example reports about its posteriors: the log predictive density, and the
comparison across methods with ArviZ (one InferenceData per method, a summary table, a forest
plot). NumPy only, so both backends compute exactly the same thing."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.special import logsumexp
from scipy.stats import norm

from reinmax_examples.artefacts import save_figure, write_atomically
from reinmax_examples.methods import METHOD_COLOURS


def arviz() -> ModuleType:
    """ArviZ, imported on first use. Its first import of a day writes a stamp file through a
    temporary file of a fixed name (arviz 0.23), so processes importing it at once (test workers,
    data-parallel ranks) can fail with FileNotFoundError; by then another has written the stamp,
    and importing again succeeds."""
    try:
        return importlib.import_module("arviz")
    except FileNotFoundError:
        return importlib.import_module("arviz")


def log_predictive_density(x: np.ndarray, draws: dict[str, np.ndarray]) -> float:
    r""":math:`\sum_n \log \frac1S \sum_s \sum_k w_{sk} \prod_d \mathcal N(x_{nd} \mid \mu_{skd},
    \sigma_{skd})`: the assignments summed out exactly, averaged over S draws of the globals.

    ``x``: n x d; ``draws``: ``weights`` S x K, ``locs`` and ``scales`` S x K x d.
    """
    x = x[:, None, None, :]  # n, s, k, d
    per_component = norm.logpdf(x, draws["locs"], draws["scales"]).sum(-1)  # n, s, k
    log_mixture = logsumexp(np.log(draws["weights"]) + per_component, -1)  # n, s
    return float((logsumexp(log_mixture, -1) - np.log(log_mixture.shape[-1])).sum())


def compare_posteriors(draws_by_method: dict[str, dict[str, np.ndarray]], out: Path) -> list[str]:
    """``draws_by_method[method][variable]``: draws with the sample axis first. Writes
    ``posterior_summary.csv`` and ``forest.png``; returns lines to print."""
    az = arviz()
    datasets = {
        method: az.from_dict(posterior={k: v[None] for k, v in draws.items()})
        for method, draws in draws_by_method.items()
    }
    summaries = []
    for method, data in datasets.items():
        summary = az.summary(data, kind="stats", hdi_prob=0.9)
        summaries.append(summary.assign(method=method))
    table = pd.concat(summaries).reset_index(names="variable")
    write_atomically(out / "posterior_summary.csv", lambda path: table.to_csv(path, index=False))
    axes = az.plot_forest(
        list(datasets.values()),
        model_names=list(datasets),
        var_names=["weights"],
        combined=True,
        hdi_prob=0.9,
        figsize=(7, 4),
        colors=[METHOD_COLOURS.get(method, "black") for method in datasets],
    )
    axis = axes.ravel()[0]
    axis.set_title(
        "Mixture weights by method: mean, 50% and 90% HDI of the fitted guide's draws\n"
        "(components sorted by location)",
        fontsize=10,
    )
    axis.set_xlabel("mixture weight")
    figure = axis.figure
    save_figure(figure, out / "forest.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    weights = table[table["variable"].str.startswith("weights")]
    pivot = weights.pivot(index="variable", columns="method", values="mean").round(3)
    return [
        "Posterior means of the mixture weights (components sorted by location):",
        pivot.to_string(),
        f"wrote {out / 'posterior_summary.csv'} and {out / 'forest.png'}",
    ]
