"""reinmax-compare --data PATH: your own matrix (gmm, vae) or texts (lda), read and validated with
clear errors before training, and runs on both backends."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reinmax_examples import compare
from reinmax_examples.data import DataError, corpus, digits, load_matrix, measurements

RNG = np.random.default_rng(0)
POINTS = np.concatenate([RNG.normal(-2, 1, (30, 2)), RNG.normal(2, 1, (30, 2))])
WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    np.save(folder / "points.npy", POINTS)
    np.savetxt(folder / "points.csv", POINTS, delimiter=",", header="a,b", comments="")
    np.save(folder / "images.npy", RNG.uniform(0, 1, (60, 16)))
    np.save(folder / "levels.npy", RNG.uniform(0, 255, (60, 16)))
    bad = POINTS.copy()
    bad[3, 1] = np.nan
    np.save(folder / "nan.npy", bad)
    documents = [" ".join(RNG.choice(WORDS[:5] if i % 2 else WORDS[5:], 30)) for i in range(28)]
    (folder / "documents.txt").write_text("\n".join(documents))
    np.save(folder / "complex.npy", POINTS + 1j)
    np.save(folder / "objects.npy", np.array([{"a": 1}, {"b": 2}]), allow_pickle=True)
    huge = POINTS.copy()
    huge[0, 0] = 1e308
    np.save(folder / "huge.npy", huge)
    (folder / "ragged.csv").write_text("1,2\n3\n4,5\n")
    (folder / "words.csv").write_text("1,2\n3,four\n5,6\n")
    (folder / "empty.csv").write_text("")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (folder / "texts").mkdir()
    for i, document in enumerate(documents):
        (folder / "texts" / f"{i:02d}.txt").write_text(document)
    return folder


def test_matrices_are_read_from_npy_and_csv_with_a_header(files):
    np.testing.assert_array_equal(load_matrix(files / "points.npy"), POINTS)
    np.testing.assert_allclose(load_matrix(files / "points.csv"), POINTS, rtol=1e-15)
    x, labels = measurements(str(files / "points.csv"))
    np.testing.assert_allclose(x, (POINTS - POINTS.mean(0)) / POINTS.std(0), rtol=1e-12)
    assert labels is None


def test_bad_matrices_are_refused_with_what_is_wrong(files):
    with pytest.raises(DataError, match=r"not finite, the first at row 3, column 1"):
        load_matrix(files / "nan.npy")
    with pytest.raises(DataError, match=r"values in \[0, 1\].*divide grey levels"):
        digits(str(files / "levels.npy"))
    with pytest.raises(DataError, match="no such file"):
        load_matrix(files / "missing.npy")
    with pytest.raises(DataError, match=r"expected a \.npy or \.csv"):
        load_matrix(files / "documents.txt")
    with pytest.raises(DataError, match="expected real numbers, got dtype complex128"):
        load_matrix(files / "complex.npy")
    for name in ("objects.npy", "ragged.csv", "words.csv"):
        with pytest.raises(DataError, match="cannot be read as a numeric matrix"):
            load_matrix(files / name)
    with pytest.raises(DataError, match="at least two rows"):
        load_matrix(files / "empty.csv")
    with pytest.raises(DataError, match="column 0 cannot be standardised in float64"):
        measurements(str(files / "huge.npy"))


def test_a_text_file_and_a_folder_give_the_same_corpus(files):
    train, test = corpus(str(files / "documents.txt"))
    assert (train.num_documents, test.num_documents) == (24, 4)  # the last seventh held out
    assert train.vocabulary == sorted(WORDS)
    folder_train, folder_test = corpus(str(files / "texts"))
    np.testing.assert_array_equal(folder_train.words, train.words)
    np.testing.assert_array_equal(folder_test.documents, test.documents)
    with pytest.raises(DataError, match="lda reads text"):
        corpus(str(files / "points.npy"))
    with pytest.raises(DataError, match="a binary file"):
        corpus(str(files / "binary.txt"))


def _run(tmp_path, argv):
    out = tmp_path / "out"
    code = compare.main([*argv, "--steps", "3", "--checkpoints", "1", "--out", str(out)])
    return code, out


# The data are read by the same functions on both backends: one run per model, the backends
# alternating
@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "backend", "name", "extra"),
    [
        ("gmm", "pyro", "points.csv", ["--components", "2"]),
        ("vae", "numpyro", "images.npy", []),
        ("lda", "pyro", "texts", ["--topics", "2"]),
    ],
)
def test_own_data_runs(tmp_path, files, model, backend, name, extra):
    argv = [model, "--backend", backend, "--methods", "reinmax", "--data", str(files / name)]
    code, out = _run(tmp_path, [*argv, *extra])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert np.isfinite(results["methods"]["reinmax"]["metric"])
    assert results["config"]["dataset" if model != "lda" else "data"] == str(files / name)


def test_bad_data_options_exit_2_before_training(tmp_path, files, capsys):
    cases = [
        (["vae", "--data", str(files / "levels.npy")], "values in [0, 1]"),
        (["gmm", "--data", str(files / "points.npy"), "--dataset", "iris"], "not both"),
        (["fhmm", "--data", str(files / "points.npy")], "--data does not apply to fhmm"),
        (["gmm", "--data", "iris"], "no such file or folder (a shipped data set is chosen"),
        (["gmm", "--data", str(files / "ragged.csv")], "cannot be read as a numeric matrix"),
        (["lda", "--data", str(files / "binary.txt")], "a binary file"),
    ]
    for argv, message in cases:
        try:
            code, _ = _run(tmp_path, argv)
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
        assert code == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out" / "results.json").exists()


# Property tests: whatever a user gives --data, the reader returns what the model needs or
# refuses it with a DataError (exit 2 in reinmax-compare), never another exception.

ARRAY_DTYPES = st.sampled_from(
    [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint16, np.bool_, np.complex64]
)


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".npy"]))
def test_any_bytes_are_read_as_a_matrix_or_refused(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"data{suffix}"
    path.write_bytes(content)
    try:
        matrix = load_matrix(path)
    except DataError:
        return
    assert matrix.dtype == np.float64 and matrix.ndim == 2 and len(matrix) >= 2
    assert np.isfinite(matrix).all()


@settings(max_examples=60, deadline=None)
@given(
    array=hnp.arrays(
        ARRAY_DTYPES,
        hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
        elements={"allow_nan": True, "allow_infinity": True},
    )
    | hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=5)),
    text=st.booleans(),
)
def test_any_array_is_standardised_scaled_or_refused(tmp_path_factory, array, text):
    folder = tmp_path_factory.mktemp("arrays")
    if text and array.ndim == 2 and np.isrealobj(array):
        path = folder / "data.csv"
        np.savetxt(path, array.astype(np.float64), delimiter=",")
    else:
        path = folder / "data.npy"
        np.save(path, array)
    try:
        x, labels = measurements(str(path))
    except DataError:
        pass
    else:
        assert labels is None and x.dtype == np.float64 and np.isfinite(x).all()
        np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-6)
    try:
        images, _ = digits(str(path))
    except DataError:
        return
    assert images.dtype == np.float32 and ((images >= 0) & (images <= 1)).all()


@settings(max_examples=40, deadline=None)
@given(content=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_text_file_is_a_corpus_or_refused(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("texts") / "documents.txt"
    path.write_bytes(content)
    try:
        train, test = corpus(str(path), min_document_frequency=1)
    except DataError:
        return
    assert train.num_documents >= 1 and test.num_documents >= 1
    assert len(train.vocabulary) >= 1


def test_a_constant_column_is_refused_even_where_its_computed_spread_is_not_zero(tmp_path):
    """Three rows of 0.1: numpy's std is about 1e-17, not 0, and the column standardised to -1s
    (found by the property test above)."""
    path = tmp_path / "constant.npy"
    np.save(path, np.full((3, 2), 0.1))
    assert np.std(np.full(3, 0.1)) != 0
    with pytest.raises(DataError, match="column 0 is constant"):
        measurements(str(path))
