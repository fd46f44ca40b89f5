"""Does a better start of the local guide logits avoid merged mixture components?

ReinMax (TraceMeanField_ELBO, AutoReinMax) on the iris mixture of ``reinmax-compare gmm`` (Pyro),
with the per-flower logits started at zero (the default) or at the model's conditional
``log p(z | x, globals)`` at the guide's initial globals (its medians before training): the
responsibilities of an E-step. Same data, start of the globals and steps per seed.

    python benchmarks/local_start.py      # 5 seeds; writes results/local_start.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pyro
import pyro.distributions as dist
from pyro import poutine
from pyro.infer import SVI
from rich.console import Console
from rich.table import Table

from reinmax_examples.compare import _load, parser
from reinmax_examples.svi_pyro import default_optimizer, guide_model_loss

STARTS = ("zeros", "conditional")


def fit(module, config: dict, seed: int, start: str) -> float:
    problem = module.Problem(config, seed=seed)
    arguments = (problem.x, problem.num_components)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide, model, loss = guide_model_loss(
        module.model,
        "reinmax",
        discrete_sites=["z"],
        temperature=config["temperature"],
        max_plate_nesting=1,
        init_loc_fn=problem.init,
    )
    poutine.block(guide)(*arguments)
    if start == "conditional":
        globals_ = guide.median(*arguments)
        components = dist.Normal(globals_["locs"], globals_["scales"]).to_event(1)
        logits = globals_["weights"].log() + components.log_prob(problem.x[:, None, :])
        (name,) = [n for n in pyro.get_param_store() if n.endswith("logits.z")]
        pyro.get_param_store()[name] = logits.detach()
    svi = SVI(model, guide, default_optimizer(config["lr"]), loss)
    for _ in range(config["steps"]):
        svi.step(*arguments)
    return module.evaluate(problem, guide)["metric"]


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("--seeds", type=int, default=5)
    arguments.add_argument("--data", help="your own matrix instead of iris (as reinmax-compare)")
    arguments.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "local_start.json"
    )
    args = arguments.parse_args()
    module = _load("gmm", "pyro")
    options = ["gmm"] if args.data is None else ["gmm", "--data", args.data]
    config = module.configure(parser().parse_args(options))
    results = {s: [fit(module, config, seed, s) for seed in range(args.seeds)] for s in STARTS}
    data = args.data or "iris"
    table = Table(title=f"{data} mixture, ReinMax, log predictive density, {args.seeds} seeds")
    for column in ["start of the local logits", "mean", "per seed"]:
        table.add_column(column, justify="right")
    for start, values in results.items():
        table.add_row(
            start, f"{statistics.fmean(values):.1f}", " ".join(f"{v:.1f}" for v in values)
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": config["steps"], "metric": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
