"""Latent Dirichlet allocation with a discrete topic for every token, on gensim's Lee corpus, in
Pyro.

    topic_words[k] ~ Dirichlet(0.1)       over the vocabulary, K topics
    doc_topics[d]  ~ Dirichlet(0.5)       over topics, one per document
    z[t]           ~ OneHotCategorical(doc_topics[document of t])    the discrete latents
    w[t]           ~ sum_k z[t, k] log topic_words[k, w[t]]           (OneHotMixture: linear in z)

ReinMax and the baselines learn a guide over every token's topic (local logits); enumeration sums
the token topics out exactly. Metric: held-out log-likelihood per token on the 50 held-out
documents, by document completion with the topics' posterior mean (``topics.py``).

    python examples/lda_pyro.py        # ReinMax against exact enumeration, 1 seed
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Predictive
from pyro.infer.autoguide import init_to_feasible, init_to_value

import pyro_reinmax as pr
from reinmax_examples.artefacts import write_text
from reinmax_examples.data import corpus, data_source, is_path
from reinmax_examples.defaults import DEFAULTS
from reinmax_examples.methods import MIXTURE_NOT_RELAXED
from reinmax_examples.parallel import SINGLE, DataParallel
from reinmax_examples.svi_pyro import fit_model
from reinmax_examples.topics import document_completion, top_words

METRIC = "held-out log-likelihood per token"
METRIC_UNIT = "nats per token"
TIE = 0.01  # nats per token
SHARDED_PLATES = ("documents", "tokens")
"""On several processes, each rank holds whole documents: their proportions and tokens."""


def configure(args) -> dict:
    """The run's settings: the command's arguments, or this model's defaults."""
    data = data_source(args, "lee")
    if is_path(data):
        corpus(data)  # refused here, before training, unless usable
    return {
        "data": data,
        "topics": args.topics or 8,
        "steps": args.steps or DEFAULTS["lda"]["steps"],
        "lr": args.lr or DEFAULTS["lda"]["lr"],
        "temperature": args.temperature or DEFAULTS["lda"]["temperature"],
    }


def model(words, documents, num_documents: int, vocabulary_size: int, num_topics: int) -> None:
    with pyro.plate("topics", num_topics):
        topic_words = pyro.sample(
            "topic_words", dist.Dirichlet(torch.full((vocabulary_size,), 0.1))
        )
    with pyro.plate("documents", num_documents):
        concentration = torch.full((num_topics,), 0.5, dtype=torch.float64)
        doc_topics = pyro.sample("doc_topics", dist.Dirichlet(concentration))
    with pyro.plate("tokens", len(words)):
        z = pyro.sample("z", pr.OneHotCategorical(probs=doc_topics[documents]))
        pyro.sample("w", pr.OneHotMixture(z, dist.Categorical(topic_words)), obs=words)


class Problem:
    """The training and held-out corpora, and a start shared by every method: topics drawn with
    the seed, uniform document proportions. Float64: a simplex over the vocabulary does not sum to
    one within torch's tolerance in float32. On several processes (``parallel``), the rank's
    documents only (:meth:`DataParallel.documents`)."""

    def __init__(
        self, config: dict, seed: int, device: str = "cpu", parallel: DataParallel = SINGLE
    ) -> None:
        self.train, self.test = corpus(config.get("data", "lee"))
        if parallel.active:
            self.train = self.train.subset(parallel.documents(self.train.num_documents))
        self.parallel = parallel
        self.num_topics = config["topics"]
        vocabulary_size = len(self.train.vocabulary)
        rng = np.random.default_rng(seed)
        topic_words = rng.dirichlet(np.full(vocabulary_size, 1.0), self.num_topics)
        self.init = init_to_value(
            values={"topic_words": torch.tensor(topic_words)}, fallback=init_to_feasible
        )
        self.arguments = (
            torch.tensor(self.train.words, device=device),
            torch.tensor(self.train.documents, device=device),
            self.train.num_documents,
            vocabulary_size,
            self.num_topics,
        )


def skip_reason(problem: Problem, method: str) -> str | None:
    if method == "gumbel-softmax":
        return MIXTURE_NOT_RELAXED
    return None  # each token's topic is summed out on its own: enumeration is cheap here


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
    """Fit by ``method``; returns the guide."""
    arguments = problem.arguments
    return fit_model(
        model,
        method,
        config=config,
        seed=seed,
        arguments=lambda _: arguments,
        on_step=on_step,
        on_checkpoint=on_checkpoint,
        checkpoints=checkpoints,
        on_compile=on_compile,
        init_loc_fn=problem.init,
        parallel=problem.parallel,
        plates=SHARDED_PLATES,
    )


def topic_words(problem: Problem, guide, num_samples: int = 50) -> np.ndarray:
    """The posterior mean of the topics under the guide, K x V."""
    predictive = Predictive(
        model, guide=guide, num_samples=num_samples, return_sites=["topic_words"]
    )
    with torch.no_grad():
        draws = predictive(*problem.arguments)["topic_words"]
    return draws.reshape(num_samples, problem.num_topics, -1).mean(0).double().cpu().numpy()


def evaluate(problem: Problem, guide) -> dict:
    return {"metric": document_completion(topic_words(problem, guide), problem.test)}


def report(problem: Problem, guides: dict, out) -> list[str]:
    """The top words of each topic, per method (also written to top_words.txt)."""
    lines = []
    for method, guide in guides.items():
        lines += [
            f"{method}:",
            *("  " + t for t in top_words(topic_words(problem, guide), problem.train.vocabulary)),
        ]
    write_text(out / "top_words.txt", "\n".join(lines) + "\n")
    return lines


def main() -> None:
    config = {"topics": 8, "steps": 400, "lr": 0.05, "temperature": 1.0}
    problem = Problem(config, seed=0)
    for method in ["enum", "reinmax"]:
        guide = fit(problem, method, seed=0, config=config, on_step=lambda *_: None)
        print(f"{method:>8}: {METRIC} {evaluate(problem, guide)['metric']:.3f}")


if __name__ == "__main__":
    main()
