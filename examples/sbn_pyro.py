"""A sigmoid belief network (Neal, 1992) on binarised digits, in Pyro: many binary latents per
digit, where exact enumeration (2^(H1 + H2) configurations per digit) is out of reach.

    h2[n] ~ Bernoulli(sigmoid(b2))                 H2 binary units (top layer)
    h1[n] ~ Bernoulli(sigmoid(W2 h2[n] + b1))      H1 binary units
    x[n]  ~ Bernoulli(sigmoid(W1 h1[n] + b0))      the digit's pixels, binarised at 1/2

The guide is amortised and mean-field: AutoReinMax with one linear encoder of the pixels per
layer. Each layer is one site of H units (``to_event(1)``) that the next layer reads as a whole,
so ``reinmax-local`` and ``hybrid`` have nothing to linearise and are skipped.

Metric: the importance-weighted bound (100 samples) on the test digits' log-likelihood, nats per
digit (higher is better), as for the VAE; the test -ELBO is reported beside it.

    python examples/sbn_pyro.py        # ReinMax and straight-through, a short run
"""

from __future__ import annotations

import sys

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from reinmax_examples.data import digits
from reinmax_examples.defaults import DEFAULTS
from reinmax_examples.methods import LOCAL_METHODS, ConfigurationError, demo, minibatches
from reinmax_examples.svi_pyro import fit_model
from reinmax_examples.vae_pyro import BATCH, TEST_SAMPLES, importance_metrics, trace_log_weights

METRIC = "test log-likelihood bound (IWAE-100)"
METRIC_UNIT = "nats per digit"
TIE = 0.5  # nats per digit
LAYERS = {"digits": (32, 8), "mnist": (200, 50)}  # (H1, H2) per data set


def configure(args) -> dict:
    """The run's settings: the command's arguments, or this model's defaults."""
    dataset = args.dataset or "digits"
    if dataset not in LAYERS:
        raise ConfigurationError(f"sbn: --dataset must be digits or mnist, got {dataset!r}")
    return {
        "dataset": dataset,
        "layers": LAYERS[dataset],
        "steps": args.steps or DEFAULTS["sbn"]["steps"],
        "lr": args.lr or DEFAULTS["sbn"]["lr"],
        "temperature": args.temperature or DEFAULTS["sbn"]["temperature"],
        "batch": BATCH,
    }


class Network(nn.Module):
    """The generative weights: top-layer logits, h2 -> h1 and h1 -> pixels."""

    def __init__(self, pixels: int, hidden: int, top: int) -> None:
        super().__init__()
        self.top = nn.Parameter(torch.zeros(top))
        self.middle = nn.Linear(top, hidden)
        self.bottom = nn.Linear(hidden, pixels)


class Encoder(nn.Module):
    """pixels -> one layer's logits (linear)."""

    def __init__(self, pixels: int, units: int) -> None:
        super().__init__()
        self.net = nn.Linear(pixels, units)

    def forward(self, x, *model_arguments):
        return self.net(x)


def model(x, network: Network) -> None:
    pyro.module("network", network)
    with pyro.plate("data", x.shape[0]):
        top = network.top.expand(x.shape[:1] + network.top.shape)
        h2 = pyro.sample("h2", dist.Bernoulli(logits=top).to_event(1))
        h1 = pyro.sample("h1", dist.Bernoulli(logits=network.middle(h2)).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=network.bottom(h1)).to_event(1), obs=x)


class Problem:
    """Binarised train and test digits (a fixed split) and the settings."""

    def __init__(self, config: dict, seed: int, device: str = "cpu") -> None:
        x, _ = digits(config["dataset"])
        x = (x > 0.5).astype(np.float32)
        order = np.random.default_rng(0).permutation(len(x))
        test_size = len(x) // 5
        self.test = torch.tensor(x[order[:test_size]], device=device)
        self.train = torch.tensor(x[order[test_size:]], device=device)
        self.config = config
        self.batches = np.random.default_rng(seed)


def skip_reason(problem: Problem, method: str) -> str | None:
    hidden, top = problem.config["layers"]
    if method == "enum":
        return f"intractable: 2^{hidden + top} joint configurations of the binary units per digit"
    if method in LOCAL_METHODS:
        return "nothing to linearise or enumerate: each layer is read as one site of H units"
    return None


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
    """Fit by ``method``; returns (network, guide)."""
    torch.manual_seed(seed)  # the same initial networks for every method
    pixels, (hidden, top) = problem.train.shape[1], config["layers"]
    network = Network(pixels, hidden, top).to(problem.train.device)
    encoders = {
        "h1": Encoder(pixels, hidden).to(problem.train.device),
        "h2": Encoder(pixels, top).to(problem.train.device),
    }
    rows = minibatches(problem.batches, len(problem.train), BATCH)
    guide = fit_model(
        model,
        method,
        config=config,
        seed=seed,
        arguments=lambda step: (problem.train[rows(step)], network),
        on_step=on_step,
        on_checkpoint=on_checkpoint
        and (lambda step, seconds, guide: on_checkpoint(step, seconds, (network, guide))),
        checkpoints=checkpoints,
        on_compile=on_compile,
        encoders=encoders,
        discrete_sites=["h1", "h2"],
        create_plates=lambda x, *_: pyro.plate("data", x.shape[0]),  # batches and test set
        optimizer=pyro.optim.Adam({"lr": config["lr"]}),
    )
    return network, guide


def evaluate(problem: Problem, fitted) -> dict:
    """The IWAE bound and the ELBO on the test digits, nats per digit, 100 samples each."""
    network, guide = fitted
    weights = trace_log_weights(model, guide, (problem.test, network), TEST_SAMPLES)
    return importance_metrics(weights)


def main() -> None:
    config = {"dataset": "digits", "layers": LAYERS["digits"], "steps": 500, "lr": 1e-3}
    demo(sys.modules[__name__], config | {"temperature": 1.0, "batch": BATCH}, ["reinmax", "st"])


if __name__ == "__main__":
    main()
