"""Posterior comparisons across methods with ArviZ: one InferenceData per method, a summary table
and a forest plot."""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd


def compare_posteriors(draws_by_method: dict[str, dict[str, np.ndarray]], out: Path) -> list[str]:
    """``draws_by_method[method][variable]``: draws with the sample axis first. Writes
    ``posterior_summary.csv`` and ``forest.png``; returns lines to print."""
    datasets = {
        method: az.from_dict(posterior={k: v[None] for k, v in draws.items()})
        for method, draws in draws_by_method.items()
    }
    summaries = []
    for method, data in datasets.items():
        summary = az.summary(data, kind="stats", hdi_prob=0.9)
        summaries.append(summary.assign(method=method))
    table = pd.concat(summaries).reset_index(names="variable")
    table.to_csv(out / "posterior_summary.csv", index=False)
    axes = az.plot_forest(
        list(datasets.values()),
        model_names=list(datasets),
        var_names=["weights"],
        combined=True,
        hdi_prob=0.9,
        figsize=(7, 4),
    )
    axes.ravel()[0].figure.savefig(out / "forest.png", dpi=110, bbox_inches="tight")
    weights = table[table["variable"].str.startswith("weights")]
    pivot = weights.pivot(index="variable", columns="method", values="mean").round(3)
    return [
        "Posterior means of the mixture weights (components sorted by location):",
        pivot.to_string(),
        f"wrote {out / 'posterior_summary.csv'} and {out / 'forest.png'}",
    ]
