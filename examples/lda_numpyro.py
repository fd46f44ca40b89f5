"""Latent Dirichlet allocation with a discrete topic for every token, on gensim's Lee corpus, in
NumPyro.

    topic_words[k] ~ Dirichlet(0.1)       over the vocabulary, K topics
    doc_topics[d]  ~ Dirichlet(0.5)       over topics, one per document
    z[t]           ~ OneHotCategorical(doc_topics[document of t])    the discrete latents
    w[t]           ~ sum_k z[t, k] log topic_words[k, w[t]]           (OneHotMixture: linear in z)

ReinMax and the baselines learn a guide over every token's topic (local logits); enumeration sums
the token topics out exactly. Metric: held-out log-likelihood per token on the 50 held-out
documents, by document completion with the topics' posterior mean (``topics.py``).

    python examples/lda_numpyro.py     # ReinMax against exact enumeration, 1 seed
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import Predictive

import numpyro_reinmax as nr
from reinmax_examples.artefacts import write_text
from reinmax_examples.data import corpus
from reinmax_examples.lda_pyro import TIE, configure, skip_reason
from reinmax_examples.parallel import SINGLE, DataParallel
from reinmax_examples.svi_numpyro import fit_model, init_to_value
from reinmax_examples.topics import document_completion, top_words

METRIC = "held-out log-likelihood per token"
METRIC_UNIT = "nats per token"
__all__ = ["TIE", "configure", "skip_reason"]


def model(
    words,
    documents,
    padding=None,
    *,
    num_documents: int,
    vocabulary_size: int,
    num_topics: int,
) -> None:
    """``padding[t]`` marks tokens added to split the tokens evenly over devices: masked out."""
    with numpyro.plate("topics", num_topics):
        topic_words = numpyro.sample("topic_words", dist.Dirichlet(jnp.full(vocabulary_size, 0.1)))
    with numpyro.plate("documents", num_documents):
        doc_topics = numpyro.sample("doc_topics", dist.Dirichlet(jnp.full(num_topics, 0.5)))
    mask = True if padding is None else ~padding
    with numpyro.plate("tokens", len(words)), handlers.mask(mask=mask):
        z = numpyro.sample("z", nr.OneHotCategorical(probs=doc_topics[documents]))
        numpyro.sample("w", nr.OneHotMixture(z, dist.Categorical(topic_words)), obs=words)


class Problem:
    """The training and held-out corpora, and a start shared by every method: topics drawn with
    the seed, uniform document proportions. On several devices (``parallel``), the tokens are
    padded to a multiple of their number with masked tokens, and split over them."""

    def __init__(
        self, config: dict, seed: int, device: str = "cpu", parallel: DataParallel = SINGLE
    ) -> None:
        self.train, self.test = corpus(config.get("data", "lee"))
        self.num_topics = config["topics"]
        vocabulary_size = len(self.train.vocabulary)
        rng = np.random.default_rng(seed)
        topic_words = rng.dirichlet(np.full(vocabulary_size, 1.0), self.num_topics)
        self.init = init_to_value(values={"topic_words": jnp.asarray(topic_words)})
        # sizes are static under jit: bind them to the model
        self.model = partial(
            model,
            num_documents=self.train.num_documents,
            vocabulary_size=vocabulary_size,
            num_topics=self.num_topics,
        )
        self.parallel = parallel
        words, documents = self.train.words, self.train.documents
        if parallel.active:
            extra = -len(words) % parallel.size
            padding = np.arange(len(words) + extra) >= len(words)
            words, documents = (np.pad(a, (0, extra)) for a in (words, documents))
            self.arguments = tuple(map(jnp.asarray, (words, documents, padding)))
        else:
            self.arguments = (jnp.asarray(words), jnp.asarray(documents))


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
    """Fit by ``method``; returns (guide, parameters)."""
    arguments = problem.arguments
    return fit_model(
        problem.model,
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
    )


def topic_words(problem: Problem, fitted, num_samples: int = 50) -> np.ndarray:
    """The posterior mean of the topics under the guide, K x V."""
    guide, params = fitted
    predictive = Predictive(
        guide, params=params, num_samples=num_samples, return_sites=["topic_words"]
    )
    draws = predictive(jax.random.PRNGKey(0), *problem.arguments)["topic_words"]
    return np.asarray(draws, dtype=np.float64).reshape(num_samples, problem.num_topics, -1).mean(0)


def evaluate(problem: Problem, fitted) -> dict:
    return {"metric": document_completion(topic_words(problem, fitted), problem.test)}


def report(problem: Problem, fitted: dict, out) -> list[str]:
    """The top words of each topic, per method (also written to top_words.txt)."""
    lines = []
    for method, f in fitted.items():
        topics = top_words(topic_words(problem, f), problem.train.vocabulary)
        lines += [f"{method}:", *("  " + t for t in topics)]
    write_text(out / "top_words.txt", "\n".join(lines) + "\n")
    return lines


def main() -> None:
    config = {"topics": 8, "steps": 400, "lr": 0.05, "temperature": 1.0}
    problem = Problem(config, seed=0)
    for method in ["enum", "reinmax"]:
        fitted = fit(problem, method, seed=0, config=config, on_step=lambda *_: None)
        print(f"{method:>8}: {METRIC} {evaluate(problem, fitted)['metric']:.3f}")


if __name__ == "__main__":
    main()
