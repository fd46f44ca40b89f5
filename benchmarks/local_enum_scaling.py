"""How the cost of a TraceLocalEnum_ELBO step grows with a model's size, both backends.

Three families of models, each timed per SVI step (median of interleaved rounds,
``timing.interleaved_medians``; NumPyro's steps jitted, compilation excluded and reported):

* ``chain``: a hidden Markov chain of T integer states (K = 3) with Gaussian emissions, one site
  per step, in a plain Python loop in Pyro and in ``scan`` in NumPyro (a plain loop of T sites
  is one XLA program of T unrolled steps, whose compilation alone takes minutes at T = 150).
  Against the same chain written with one-hot sites under ``TraceMeanField_ELBO`` (the
  ``reinmax`` method's ELBO: as many sites, no linearisation).
* ``parents``: one observation per datum (64 data) depending on m 4-category sites,
  ``Bernoulli(logits=sum_i w_i[z_i])``. Against ``TraceMeanField_ELBO`` on the one-hot version,
  and exact enumeration (``TraceEnum_ELBO``, 4^m configurations per datum) while m <= 6.
* ``hmm``: the HMM of NumPyro's ``hmm_enum.py`` (model 1: 16 hidden states, 8 binary tones, 20
  sequences of up to 50 steps, ``scan``; in Pyro ``pyro.markov``) with every state summed out:
  ``AutoReinMax(enumerate="auto")`` under ``TraceLocalEnum_ELBO`` against ``TraceEnum_ELBO``.
  (NumPyro's ``TraceEnum_ELBO`` returns a wrong value with ``scan``; its cost is the
  reference the issue names.)

    python benchmarks/local_enum_scaling.py   # results/local_enum_scaling-cpu.json and .png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from timing import interleaved_medians

RESULTS = Path(__file__).parent / "results"
CHAIN_LENGTHS = (10, 30, 100, 300, 1000)
PARENTS = (1, 2, 5, 10, 20)
MAX_ENUMERATED_PARENTS = 6


# ----------------------------------------------------------------------------------- Pyro
def pyro_steps(family: str, size: int) -> dict:
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
    from pyro.infer.autoguide import AutoDelta

    import pyro_reinmax as pr
    from pyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO, TraceMeanField_ELBO

    rng = np.random.default_rng(0)
    methods = {}

    def stepper(model, guide, elbo, *args):
        pyro.clear_param_store()
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), elbo)
        svi.step(*args)  # the guide's and the ELBO's set-up

        def timed():
            pyro.set_rng_seed(0)
            svi.step(*args)

        return timed

    if family == "chain":
        trans = torch.full((3, 3), 0.1) + 0.7 * torch.eye(3)
        x = torch.tensor(rng.normal(size=size), dtype=torch.float32)

        def integer(x):
            locs = pyro.param("locs", torch.tensor([-1.0, 0.0, 1.0]))
            z = pyro.sample("z_0", dist.Categorical(torch.ones(3) / 3))
            pyro.sample("x_0", dist.Normal(locs[z], 1.0), obs=x[0])
            for t in range(1, len(x)):
                z = pyro.sample(f"z_{t}", dist.Categorical(trans[z]))
                pyro.sample(f"x_{t}", dist.Normal(locs[z], 1.0), obs=x[t])

        def one_hot(x):
            locs = pyro.param("locs", torch.tensor([-1.0, 0.0, 1.0]))
            z = pyro.sample("z_0", pr.OneHotCategorical(torch.ones(3) / 3))
            pyro.sample("x_0", pr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x[0])
            for t in range(1, len(x)):
                z = pyro.sample(f"z_{t}", pr.OneHotCategorical(z @ trans))
                pyro.sample(f"x_{t}", pr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x[t])

        methods["local"] = stepper(integer, AutoReinMax(integer), TraceLocalEnum_ELBO(), x)
        methods["mean field"] = stepper(one_hot, AutoReinMax(one_hot), TraceMeanField_ELBO(), x)
    elif family == "parents":
        weights = torch.tensor(rng.normal(size=(size, 4)), dtype=torch.float32)
        x = torch.tensor(rng.random(64) < 0.5, dtype=torch.float32)

        def integer(x):
            with pyro.plate("data", len(x)):
                zs = [
                    pyro.sample(f"z{i}", dist.Categorical(logits=torch.zeros(4)))
                    for i in range(size)
                ]
                logits = sum(weights[i][z] for i, z in enumerate(zs))
                pyro.sample("x", dist.Bernoulli(logits=logits), obs=x)

        def one_hot(x):
            with pyro.plate("data", len(x)):
                zs = [
                    pyro.sample(f"z{i}", pr.OneHotCategorical(logits=torch.zeros(4)))
                    for i in range(size)
                ]
                logits = sum(z @ weights[i] for i, z in enumerate(zs))
                pyro.sample("x", dist.Bernoulli(logits=logits), obs=x)

        methods["local"] = stepper(integer, AutoReinMax(integer), TraceLocalEnum_ELBO(), x)
        methods["mean field"] = stepper(one_hot, AutoReinMax(one_hot), TraceMeanField_ELBO(), x)
        if size <= MAX_ENUMERATED_PARENTS:
            methods["enumeration"] = stepper(
                config_enumerate(integer),
                lambda x: None,
                TraceEnum_ELBO(max_plate_nesting=1),
                x,
            )
    else:  # hmm
        sequences, lengths = _hmm_data(rng)
        sequences = torch.tensor(sequences, dtype=torch.float32)
        lengths = torch.tensor(lengths)

        def hmm(sequences, lengths):
            num_sequences, max_length, data_dim = sequences.shape
            probs_x = pyro.sample("probs_x", dist.Dirichlet(0.9 * torch.eye(16) + 0.1).to_event(1))
            probs_y = pyro.sample("probs_y", dist.Beta(0.1, 0.9).expand([16, data_dim]).to_event(2))
            tones = pyro.plate("tones", data_dim, dim=-1)
            with pyro.plate("sequences", num_sequences, dim=-2) as batch:
                x = 0
                for t in pyro.markov(range(max_length)):
                    with pyro.poutine.mask(mask=(t < lengths[batch]).unsqueeze(-1)):
                        x = pyro.sample(f"x_{t}", dist.Categorical(probs_x[x]))
                        with tones:
                            pyro.sample(
                                f"y_{t}",
                                dist.Bernoulli(probs_y[x.squeeze(-1)]),
                                obs=sequences[batch, t],
                            )

        hidden = [f"x_{t}" for t in range(sequences.shape[1])]
        globals_guide = AutoDelta(pyro.poutine.block(hmm, hide=hidden))
        methods["enumeration"] = stepper(
            config_enumerate(hmm),
            globals_guide,
            TraceEnum_ELBO(max_plate_nesting=2),
            sequences,
            lengths,
        )
        hybrid = AutoReinMax(hmm, enumerate="auto", continuous_guide=AutoDelta)
        methods["local, all summed out"] = stepper(
            hmm, hybrid, TraceLocalEnum_ELBO(max_plate_nesting=2), sequences, lengths
        )
    return {name: (fn, 0.0) for name, fn in methods.items()}


# --------------------------------------------------------------------------------- NumPyro
def numpyro_steps(family: str, size: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.contrib.control_flow import scan
    from numpyro.contrib.funsor import config_enumerate
    from numpyro.handlers import mask
    from numpyro.infer import SVI, TraceEnum_ELBO
    from numpyro.infer.autoguide import AutoDelta

    import numpyro_reinmax as nr
    from numpyro_reinmax.infer import AutoReinMax, TraceLocalEnum_ELBO, TraceMeanField_ELBO

    rng = np.random.default_rng(0)
    methods = {}

    def stepper(model, guide, elbo, *args):
        svi = SVI(model, guide, numpyro.optim.Adam(0.01), elbo)
        state = svi.init(jax.random.PRNGKey(0), *args)
        update = jax.jit(svi.update)
        start = time.perf_counter()
        jax.block_until_ready(update(state, *args))
        compile_seconds = time.perf_counter() - start

        def timed():
            jax.block_until_ready(update(state, *args)[1])

        return timed, compile_seconds

    def exact_stepper(model, *args):
        """An Adam step on the exact marginal log-density of the globals (every discrete site
        summed out by funsor's ``log_density``, correct with ``scan``)."""
        import optax
        from numpyro.contrib.funsor import enum, log_density
        from numpyro.distributions import biject_to

        trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(*args)
        names = [n for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"]]
        names = [n for n in names if not trace[n]["fn"].support.is_discrete]
        transforms = {n: biject_to(trace[n]["fn"].support) for n in names}
        params = {n: transforms[n].inv(trace[n]["value"]) for n in names}
        optimizer = optax.adam(0.01)

        def loss(params):
            values = {n: transforms[n](u) for n, u in params.items()}
            enumerated = enum(config_enumerate(model), first_available_dim=-3)
            return -log_density(enumerated, args, {}, values)[0]

        @jax.jit
        def update(params, state):
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = optimizer.update(grads, state)
            return optax.apply_updates(params, updates), state, value

        state = optimizer.init(params)
        start = time.perf_counter()
        jax.block_until_ready(update(params, state))
        compile_seconds = time.perf_counter() - start

        def timed():
            jax.block_until_ready(update(params, state)[2])

        return timed, compile_seconds

    if family == "chain":
        trans = jnp.full((3, 3), 0.1) + 0.7 * jnp.eye(3)
        x = jnp.asarray(rng.normal(size=size), jnp.float32)

        def integer(x):
            locs = numpyro.param("locs", jnp.array([-1.0, 0.0, 1.0]))

            def step(z_prev, x_t):
                z = numpyro.sample("z", dist.Categorical(trans[z_prev]))
                numpyro.sample("x", dist.Normal(locs[z], 1.0), obs=x_t)
                return z, None

            scan(step, 0, x)

        def one_hot(x):
            locs = numpyro.param("locs", jnp.array([-1.0, 0.0, 1.0]))

            def step(z_prev, x_t):
                z = numpyro.sample("z", nr.OneHotCategorical(z_prev @ trans))
                numpyro.sample("x", nr.OneHotMixture(z, dist.Normal(locs, 1.0)), obs=x_t)
                return z, None

            scan(step, jnp.eye(3)[0], x)

        methods["local"] = stepper(integer, AutoReinMax(integer), TraceLocalEnum_ELBO(), x)
        methods["mean field"] = stepper(one_hot, AutoReinMax(one_hot), TraceMeanField_ELBO(), x)
    elif family == "parents":
        weights = jnp.asarray(rng.normal(size=(size, 4)), jnp.float32)
        x = jnp.asarray(rng.random(64) < 0.5, jnp.float32)

        def integer(x):
            with numpyro.plate("data", len(x)):
                zs = [
                    numpyro.sample(f"z{i}", dist.Categorical(logits=jnp.zeros(4)))
                    for i in range(size)
                ]
                logits = sum(weights[i][z] for i, z in enumerate(zs))
                numpyro.sample("x", dist.Bernoulli(logits=logits), obs=x)

        def one_hot(x):
            with numpyro.plate("data", len(x)):
                zs = [
                    numpyro.sample(f"z{i}", nr.OneHotCategorical(logits=jnp.zeros(4)))
                    for i in range(size)
                ]
                logits = sum(z @ weights[i] for i, z in enumerate(zs))
                numpyro.sample("x", dist.Bernoulli(logits=logits), obs=x)

        methods["local"] = stepper(integer, AutoReinMax(integer), TraceLocalEnum_ELBO(), x)
        methods["mean field"] = stepper(one_hot, AutoReinMax(one_hot), TraceMeanField_ELBO(), x)
        if size <= MAX_ENUMERATED_PARENTS:

            def no_guide(x):
                pass

            methods["enumeration"] = stepper(
                config_enumerate(integer), no_guide, TraceEnum_ELBO(max_plate_nesting=1), x
            )
    else:  # hmm
        sequences, lengths = (jnp.asarray(a) for a in _hmm_data(rng))
        sequences = sequences.astype(jnp.float32)

        def hmm(sequences, lengths):
            num_sequences, _, data_dim = sequences.shape
            probs_x = numpyro.sample("probs_x", dist.Dirichlet(0.9 * jnp.eye(16) + 0.1).to_event(1))
            probs_y = numpyro.sample(
                "probs_y", dist.Beta(0.1, 0.9).expand([16, data_dim]).to_event(2)
            )

            def transition(carry, y):
                x_prev, t = carry
                observed = mask(mask=(t < lengths)[..., None])
                with numpyro.plate("sequences", num_sequences, dim=-2), observed:
                    x = numpyro.sample("x", dist.Categorical(probs_x[x_prev]))
                    with numpyro.plate("tones", data_dim, dim=-1):
                        numpyro.sample("y", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=y)
                return (x, t + 1), None

            x_init = jnp.zeros((num_sequences, 1), dtype=jnp.int32)
            scan(transition, (x_init, 0), jnp.swapaxes(sequences, 0, 1))

        globals_guide = AutoDelta(numpyro.handlers.block(hmm, hide=["x"]))
        methods["enumeration"] = stepper(
            config_enumerate(hmm),
            globals_guide,
            TraceEnum_ELBO(max_plate_nesting=2),
            sequences,
            lengths,
        )
        methods["exact (log_density)"] = exact_stepper(hmm, sequences, lengths)
        hybrid = AutoReinMax(hmm, enumerate="auto", continuous_guide=AutoDelta)
        methods["local, all summed out"] = stepper(
            hmm, hybrid, TraceLocalEnum_ELBO(max_plate_nesting=2), sequences, lengths
        )
    return methods


def _hmm_data(rng) -> tuple[np.ndarray, np.ndarray]:
    """20 sequences of up to 50 steps of 8 binary tones (about 30% on), lengths 25 to 50."""
    sequences = (rng.random((20, 50, 8)) < 0.3).astype(np.float32)
    return sequences, rng.integers(25, 51, 20)


def measure(backend: str, family: str, size: int, rounds: int) -> dict:
    steps = (pyro_steps if backend == "pyro" else numpyro_steps)(family, size)
    timings = interleaved_medians({n: fn for n, (fn, _) in steps.items()}, rounds=rounds)
    return {
        "backend": backend,
        "family": family,
        "size": size,
        "ms_per_step": {n: 1000 * t["median_s"] for n, t in timings.items()},
        "fastest_ms": {n: 1000 * t["min_s"] for n, t in timings.items()},
        "compile_seconds": {n: c for n, (_, c) in steps.items()},
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, family, label in [
        (axes[0], "chain", "chain length T (sites)"),
        (axes[1], "parents", "parents m of one factor (4 categories each)"),
    ]:
        for backend, style in [("pyro", "-"), ("numpyro", "--")]:
            selected = [r for r in rows if r["family"] == family and r["backend"] == backend]
            for method, marker in [("local", "o"), ("mean field", "s"), ("enumeration", "^")]:
                points = [
                    (r["size"], r["ms_per_step"][method])
                    for r in selected
                    if method in r["ms_per_step"]
                ]
                if points:
                    sizes, times = zip(*points, strict=True)
                    axis.plot(sizes, times, style, marker=marker, label=f"{backend}: {method}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("ms per SVI step")
        axis.grid(alpha=0.3)
    axes[0].set_title("TraceLocalEnum_ELBO vs TraceMeanField_ELBO")
    axes[1].set_title("and exact enumeration (4^m per datum)")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("--rounds", type=int, default=5)
    arguments.add_argument("--backends", default="pyro,numpyro")
    arguments.add_argument("--out", type=Path, default=RESULTS / "local_enum_scaling-cpu.json")
    args = arguments.parse_args()
    rows = []
    for backend in args.backends.split(","):
        for family, sizes in [("chain", CHAIN_LENGTHS), ("parents", PARENTS), ("hmm", (16,))]:
            for size in sizes:
                rows.append(measure(backend, family, size, args.rounds))
                print(backend, family, size, rows[-1]["ms_per_step"], flush=True)
    table = Table(title=f"ms per SVI step, median of {args.rounds} interleaved rounds")
    for column in ["backend", "model", "size", "local", "mean field", "enumeration", "ratio"]:
        table.add_column(column, justify="right")
    for row in rows:
        ms = row["ms_per_step"]
        local = ms.get("local", ms.get("local, all summed out"))
        other = ms.get("mean field", ms.get("enumeration"))
        table.add_row(
            row["backend"],
            row["family"],
            str(row["size"]),
            f"{local:.2f}",
            f"{ms['mean field']:.2f}" if "mean field" in ms else "",
            f"{ms['enumeration']:.2f}" if "enumeration" in ms else "",
            f"{local / other:.2f}",
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rounds": args.rounds, "rows": rows}, indent=1))
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
