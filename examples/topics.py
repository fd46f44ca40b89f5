"""Topic-model evaluation shared by both backends: held-out log-likelihood by document completion,
and the top words of each topic."""

from __future__ import annotations

import numpy as np

from reinmax_examples.data import Corpus


def document_completion(topic_words: np.ndarray, corpus: Corpus, iterations: int = 100) -> float:
    r"""Held-out log-likelihood per token, with topics summed out exactly.

    For each held-out document, its even-numbered tokens estimate the document's topic proportions
    :math:`\theta_d` (EM with the topics :math:`\phi` fixed); its odd-numbered tokens are scored,
    :math:`\log p(w) = \log \sum_k \theta_{dk} \phi_{k w}`. The same computation for every method.
    """
    phi = np.clip(topic_words, 1e-300, None)
    total, count = 0.0, 0
    for d in range(corpus.num_documents):
        words = corpus.words[corpus.documents == d]
        seen, scored = words[0::2], words[1::2]
        if len(seen) == 0 or len(scored) == 0:
            continue
        theta = np.full(phi.shape[0], 1.0 / phi.shape[0])
        for _ in range(iterations):
            responsibility = theta[:, None] * phi[:, seen]  # K x tokens
            responsibility /= responsibility.sum(0, keepdims=True)
            theta = responsibility.sum(1) / len(seen)
        total += np.log(theta @ phi[:, scored]).sum()
        count += len(scored)
    return total / count


def top_words(topic_words: np.ndarray, vocabulary: list[str], n: int = 8) -> list[str]:
    """One line per topic: its ``n`` most probable words."""
    return [
        f"topic {k}: " + " ".join(vocabulary[i] for i in np.argsort(-row)[:n])
        for k, row in enumerate(topic_words)
    ]
