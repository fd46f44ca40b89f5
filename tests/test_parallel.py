"""How the examples split their data over ranks: every datum on exactly one rank, in the same
global minibatches as on one process, with an independent random stream per rank."""

import numpy as np

from reinmax_examples.data import Corpus
from reinmax_examples.parallel import SINGLE, DataParallel


def test_the_ranks_pieces_partition_each_minibatch_and_the_documents():
    rows = np.random.default_rng(0).permutation(100)
    for size in (1, 2, 3, 7):
        ranks = [DataParallel(rank, size) for rank in range(size)]
        pieces = [r.rows(rows) for r in ranks]
        np.testing.assert_array_equal(np.concatenate(pieces), rows)  # in order, none twice
        documents = np.sort(np.concatenate([r.documents(10) for r in ranks]))
        np.testing.assert_array_equal(documents, np.arange(10))


def test_one_process_keeps_its_seed_and_ranks_get_distinct_streams():
    assert SINGLE.seed(5) == 5 and not SINGLE.active and SINGLE.leader
    seeds = {DataParallel(rank, 4).seed(seed) for rank in range(4) for seed in range(3)}
    assert len(seeds) == 12


def test_a_corpus_subset_keeps_its_documents_tokens_renumbered():
    corpus = Corpus(["a", "b", "c"], np.array([0, 1, 2, 0, 2]), np.array([0, 0, 1, 2, 2]), 3)
    subset = corpus.subset(np.array([2, 0]))
    assert subset.num_documents == 2 and subset.vocabulary == corpus.vocabulary
    np.testing.assert_array_equal(subset.words, [0, 1, 0, 2])
    np.testing.assert_array_equal(subset.documents, [1, 1, 0, 0])
