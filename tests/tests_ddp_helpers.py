"""Two small models written as a Pyro user writes them (a VAE with an amortised encoder; LDA with
per-document and per-token guide parameters), one SVI step of each on one process or on one rank
of several (``reinmax_examples.svi_pyro.data_parallel_step``), with deterministic categorical
draws so that the ranks' draws are the single process's."""

from __future__ import annotations

from functools import partial
from unittest import mock

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.infer.autoguide import AutoDelta
from pyro.infer.autoguide.initialization import init_to_mean
from torch import nn

import pyro_reinmax as pr
from pyro_reinmax.infer import AutoReinMax, TraceMeanField_ELBO
from reinmax_examples.parallel import DataParallel
from reinmax_examples.ranks import join, leave
from reinmax_examples.svi_pyro import data_parallel_step

LATENTS, CATEGORIES, PIXELS, DIGITS = 2, 3, 6, 8
TOPICS, VOCABULARY, DOCUMENTS = 3, 5, 5
LR = 0.05


def deterministic_draw(probs: torch.Tensor, validate: bool = False) -> torch.Tensor:
    """An inverse-CDF draw whose uniform is a fixed function of the row: the same row gives the
    same category on every process."""
    weights = torch.arange(1, probs.shape[-1] + 1, dtype=torch.float64)
    u = (probs.double() * weights * 997.13).sum(-1, keepdim=True).frac()
    cdf = probs.double().cumsum(-1)
    u = u * cdf[..., -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1)


def vae_data() -> torch.Tensor:
    return torch.tensor(
        np.random.default_rng(1).uniform(size=(DIGITS, PIXELS)), dtype=torch.float32
    )


def vae_model(x, decoder):
    pyro.module("decoder", decoder)
    with pyro.plate("data", x.shape[0]):
        prior = pr.OneHotCategorical(logits=x.new_zeros(LATENTS, CATEGORIES)).to_event(1)
        z = pyro.sample("z", prior)
        logits = decoder(z.reshape(z.shape[:-2] + (-1,)))
        pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(PIXELS, LATENTS * CATEGORIES)

    def forward(self, x, decoder):
        return self.linear(x).reshape(x.shape[:-1] + (LATENTS, CATEGORIES))


def vae_parts():
    torch.manual_seed(0)
    decoder = nn.Linear(LATENTS * CATEGORIES, PIXELS)
    guide = AutoReinMax(
        vae_model,
        encoders={"z": Encoder()},
        create_plates=lambda x, _: pyro.plate("data", x.shape[0]),
    )
    return decoder, guide


def lda_corpus():
    """Token words and documents: document d has d + 2 tokens."""
    rng = np.random.default_rng(2)
    documents = np.repeat(np.arange(DOCUMENTS), np.arange(DOCUMENTS) + 2)
    return rng.integers(VOCABULARY, size=len(documents)), documents


def lda_model(words, documents, num_documents):
    with pyro.plate("topics", TOPICS):
        topic_words = pyro.sample(
            "topic_words", dist.Dirichlet(torch.full((VOCABULARY,), 0.5, dtype=torch.float64))
        )
    with pyro.plate("documents", num_documents):
        concentration = torch.full((TOPICS,), 0.5, dtype=torch.float64)
        doc_topics = pyro.sample("doc_topics", dist.Dirichlet(concentration))
    with pyro.plate("tokens", len(words)):
        z = pyro.sample("z", pr.OneHotCategorical(probs=doc_topics[documents]))
        pyro.sample("w", pr.OneHotMixture(z, dist.Categorical(topic_words)), obs=words)


def lda_arguments(documents_kept: np.ndarray):
    """The model's arguments for the documents ``documents_kept`` (renumbered from 0), and the
    global indices of their tokens."""
    words, documents = lda_corpus()
    position = np.full(DOCUMENTS, -1)
    position[documents_kept] = np.arange(len(documents_kept))
    tokens = np.flatnonzero(position[documents] >= 0)
    arguments = (
        torch.tensor(words[tokens]),
        torch.tensor(position[documents[tokens]]),
        len(documents_kept),
    )
    return arguments, tokens


def token_logits_table() -> torch.Tensor:
    """Fixed starting guide logits for every token of the corpus, so that tokens differ."""
    rng = np.random.default_rng(3)
    return torch.tensor(rng.normal(size=(len(lda_corpus()[0]), TOPICS)))


def _set_token_logits(guide, tokens) -> None:
    (logits,) = (p for n, p in guide.named_parameters() if n.endswith("logits.z_unconstrained"))
    with torch.no_grad():
        logits.copy_(token_logits_table()[tokens])


def step(name: str, parallel: DataParallel) -> dict[str, torch.Tensor]:
    """One SGD step of model ``name`` ("vae" or "lda") on this rank's shard (the whole data on a
    single process); returns the parameters after it (local ones: this rank's rows)."""
    pyro.clear_param_store()
    loss = TraceMeanField_ELBO(max_plate_nesting=1)
    optimizer = pyro.optim.SGD({"lr": LR})
    # the Python autograd Function draws with draw_index (the C++ estimator operator would not)
    with (
        mock.patch("pyro_reinmax.estimators.draw_index", deterministic_draw),
        mock.patch("pyro_reinmax.native.operator_usable", lambda logits: False),
    ):
        if name == "vae":
            decoder, guide = vae_parts()
            rows = np.array_split(np.arange(DIGITS), parallel.size)[parallel.rank]
            arguments, model, plates = (vae_data()[rows], decoder), vae_model, ("data",)
        else:
            kept = np.arange(parallel.rank, DOCUMENTS, parallel.size)
            arguments, tokens = lda_arguments(kept)
            continuous = partial(AutoDelta, init_loc_fn=init_to_mean)
            guide = AutoReinMax(lda_model, continuous_guide=continuous)
            model, plates = lda_model, ("documents", "tokens")
        poutine.block(guide)(*arguments)  # the guide's parameters
        if name == "lda":
            _set_token_logits(guide, tokens)
        if parallel.active:
            step_once = data_parallel_step(
                model, guide, loss, optimizer, arguments, parallel, plates
            )
        else:
            step_once = SVI(model, guide, optimizer, loss).step
        step_once(*arguments)
    return {
        name: value.detach().clone() for name, value in pyro.get_param_store().named_parameters()
    }


def rank_steps(rank: int, size: int, init_method: str, folder: str) -> None:
    """``torch.multiprocessing.spawn`` target: both models' steps on rank ``rank``, saved."""
    parallel = DataParallel(rank, size)
    join(parallel, "cpu", init_method)
    try:
        torch.save({m: step(m, parallel) for m in ("vae", "lda")}, f"{folder}/rank{rank}.pt")
    finally:
        leave()
