"""The CPU kernels (pyro_reinmax/native.c) against the PyTorch path: the same draws from the same
seed, the same gradients for every rule, and how the build is chosen, cached and reported.

The formula and goodness-of-fit tests elsewhere run on the kernels (they are on by default on the
CPU); these tests pin that turning them off changes nothing but the speed."""

import math
import subprocess
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import pyro_reinmax
from pyro_reinmax import estimators, native
from pyro_reinmax.estimators import RULES
from pyro_reinmax.sampling import draw_exponentials, draw_index
from pyro_reinmax.validation import raise_nan_rows
from reference import FAMILY_OPTIONS
from reinmax_kernels import KERNELS_SOURCE, build

RULE_NAMES = list(RULES)
RELATIVE_TOLERANCE = {torch.float32: 2e-5, torch.float64: 1e-12}


@pytest.fixture(autouse=True)
def _kernels_as_configured():
    """Each test leaves the kernels as the environment says (on by default). Both paths draw the
    Gumbel rules' noise from PyTorch's generator, so the comparisons below pin that a seed gives
    the same draws, noise and gradients whichever path runs."""
    yield
    native.set_native_kernels(None)


def _estimate(name, logits, temperature, use_native, seed, with_probs):
    """Sample, probs and the gradient of rule ``name`` on the given path, from ``seed``."""
    native.set_native_kernels(use_native)
    leaf = logits.detach().clone().requires_grad_()
    generator = torch.Generator().manual_seed(seed + 1)
    g = torch.randn(logits.shape, generator=generator, dtype=torch.float64).to(logits.dtype)
    h = torch.randn(logits.shape, generator=generator, dtype=torch.float64).to(logits.dtype)
    torch.manual_seed(seed)
    sample, probs = getattr(pyro_reinmax, name)(leaf, temperature, **FAMILY_OPTIONS.get(name, {}))
    loss = (sample * g).sum() + ((probs * h).sum() if with_probs else 0)
    loss.backward()
    size = float(torch.cat([g.abs().flatten(), h.abs().flatten(), torch.zeros(1)]).max())
    return sample.detach(), probs.detach(), leaf.grad, size


def _assert_same_on_both_paths(name, logits, temperature, seed=0, with_probs=True):
    on = _estimate(name, logits, temperature, True, seed, with_probs)
    off = _estimate(name, logits, temperature, False, seed, with_probs)
    assert torch.equal(on[0], off[0]), "the kernels drew other categories than PyTorch"
    assert torch.equal(on[1], off[1])
    assert torch.isfinite(on[2]).all()
    # The paths round differently. Entries are differences like pi_k (h_k - <pi, h>), which lose
    # digits relative to the upstream gradients' size, or to the largest entry (a small
    # temperature scales the gradient up).
    tolerance = RELATIVE_TOLERANCE[logits.dtype]
    atol = tolerance * (on[3] + float(off[2].abs().max()))
    torch.testing.assert_close(on[2], off[2], rtol=tolerance, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
@pytest.mark.parametrize("name", RULE_NAMES)
def test_kernels_give_the_draws_and_gradients_of_the_pytorch_path(name, temperature, dtype):
    logits = torch.randn(3, 5, 7, dtype=torch.float64).to(dtype) * 2
    _assert_same_on_both_paths(name, logits, temperature, with_probs=True)
    _assert_same_on_both_paths(name, logits, temperature, seed=1, with_probs=False)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_masked_categories_and_extreme_temperatures_on_both_paths(name):
    logits = torch.randn(40, 6, dtype=torch.float64)
    logits[:, [0, 3]] = -torch.inf
    logits[::2, 5] = -torch.inf  # a masked last category too
    for temperature in [1e-300, 1e-3, 1.0, 1e3]:
        _assert_same_on_both_paths(name, logits, temperature)
    on = _estimate(name, logits, 1.3, True, 0, True)
    assert on[0][:, [0, 3]].sum() == 0 and on[0][::2, 5].sum() == 0
    assert (on[2][:, [0, 3]] == 0).all()


SINGLE_ANCHOR_RULES = [name for name in RULE_NAMES if RULES[name].terms is None]


def _operator_and_function(name, logits, temperature, create_graph):
    """Sample and gradient (and, with ``create_graph``, a second derivative) from the estimator
    operator and from the Python autograd Function over the same kernels."""
    results = []
    operator = native.EstimatorOperator.operator
    for use_operator in (True, False):
        native.EstimatorOperator.operator = operator if use_operator else None
        try:
            leaf = logits.detach().clone().requires_grad_()
            g = torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).reshape(logits.shape)
            torch.manual_seed(3)
            sample, probs = getattr(pyro_reinmax, name)(leaf, temperature)
            kind = type(sample.grad_fn).__name__
            loss = (sample * g).sum() + (probs * g.flip(-1)).sum()
            (grad,) = torch.autograd.grad(loss, leaf, create_graph=create_graph)
            second = torch.autograd.grad((grad**2).sum(), leaf)[0] if create_graph else None
            results.append((sample, grad.detach(), second, kind))
        finally:
            native.EstimatorOperator.operator = operator
    return results


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", SINGLE_ANCHOR_RULES)
def test_the_operator_gives_the_python_functions_draws_and_gradients(name, dtype, create_graph):
    """The C++ estimator operator against OneHotEstimatorFunction on the same kernels: the same
    random numbers in the same order (so the same draws and noise), the same backward (so the same
    gradient, to the bit), and under create_graph the same differentiable backward."""
    native.set_native_kernels(True)
    if native.EstimatorOperator.operator is None:
        pytest.skip(f"the estimator operator did not build: {native.EstimatorOperator.failure}")
    logits = torch.randn(4, 3, 6, dtype=torch.float64).to(dtype) * 2
    logits[..., 1] = -torch.inf
    for temperature in (1.0, 0.6):
        operator, function = _operator_and_function(name, logits, temperature, create_graph)
        assert operator[3] == "CppFunction" and function[3] == "OneHotEstimatorFunctionBackward"
        assert torch.equal(operator[0], function[0])
        assert torch.equal(operator[1], function[1])
        if create_graph:
            assert torch.isfinite(operator[2]).all()
            torch.testing.assert_close(operator[2], function[2], rtol=1e-12, atol=1e-12)


def test_a_failed_operator_build_keeps_the_kernels(monkeypatch):
    """Without the operator (no C++ compiler, no PyTorch headers) the Python Function runs on the
    kernels, and the status says why."""
    native.set_native_kernels(True)
    monkeypatch.setattr(native.EstimatorOperator, "operator", None)
    monkeypatch.setattr(native.EstimatorOperator, "failure", "c++: not found")
    sample, _ = pyro_reinmax.reinmax(torch.randn(5, 4, requires_grad=True), 1.3)
    assert type(sample.grad_fn).__name__ == "OneHotEstimatorFunctionBackward"
    assert "c++: not found" in pyro_reinmax.native_kernels_status()


@pytest.mark.parametrize("shape", [(0, 4), (3, 1), (2, 0, 5)])
@pytest.mark.parametrize("name", RULE_NAMES)
def test_empty_batches_and_a_single_category(name, shape):
    """No rows, or one category (whose gradient is zero: J(p) = 0 for K = 1), on both paths."""
    for use_native in (True, False):
        sample, _, grad, _ = _estimate(name, torch.zeros(shape), 1.3, use_native, 0, True)
        assert sample.shape == grad.shape == shape
        assert (sample.sum(-1) == 1).all() and (grad == 0).all()


@pytest.mark.parametrize("name", ["reinmax", "gumbel_rao"])
def test_large_calls_split_over_threads_agree(name):
    """From 32768 elements on, the kernels split rows over PyTorch's OpenMP threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        logits = torch.randn(1200, 33, dtype=torch.float64) * 3
        _assert_same_on_both_paths(name, logits, 0.8)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("temperature", [1.0, 1.3])
@pytest.mark.parametrize("shape", [(300, 2), (101, 7), (40, 64), (12000, 3)])
@pytest.mark.parametrize("name", ["reinmax", "gumbel_rao", "reinmax_cv"])
def test_short_rows_taken_a_chunk_at_a_time_agree(name, shape, temperature):
    """Rows of at most 64 categories go through the backward 256 entries (whole rows) at a
    time: several chunks and a partial last one, and (12000 x 3) chunks over threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        logits = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        logits[::5, 0] = -math.inf  # masked categories
        _assert_same_on_both_paths(name, logits * 2, temperature)
    finally:
        torch.set_num_threads(threads)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 20),
    categories=st.integers(1, 70),
    scale=st.sampled_from([1e-3, 1.0, 30.0]),
    temperature=st.floats(0.05, 20.0),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(RULE_NAMES),
)
def test_any_shape_logits_and_temperature_agree(rows, categories, scale, temperature, seed, name):
    """Row lengths around the kernels' blocks of 8 rows and 16 entries, and short rows."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, categories, generator=generator, dtype=torch.float64) * scale
    _assert_same_on_both_paths(name, logits, temperature, seed=seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("use_native", [True, False])
def test_the_gumbel_noise_is_standard_exponentials_from_torchs_generator(dtype, use_native):
    native.set_native_kernels(use_native)
    torch.manual_seed(0)
    values = draw_exponentials(torch.empty(200, 100, dtype=dtype))
    assert values.dtype == dtype and values.shape == (200, 100)
    assert (values >= torch.finfo(dtype).tiny).all() and torch.isfinite(values).all()
    flat = values.double().flatten().numpy()
    assert stats.kstest(flat, "expon").pvalue > 1e-3
    # the upper tail too: P(E > 7) = e^-7, about 18 of 20000
    assert stats.binomtest(int((flat > 7).sum()), flat.size, np.exp(-7)).pvalue > 1e-3
    torch.manual_seed(0)
    uniforms = torch.rand(200, 100, dtype=dtype)
    torch.testing.assert_close(values, -uniforms.log(), rtol=0, atol=0)


@pytest.mark.parametrize(
    "name", ["gumbel_rao", "gumbel_straight_through", "reinmax_rao", "gapped_straight_through"]
)
def test_the_same_seed_gives_the_same_gradient_with_or_without_the_kernels(name):
    """The Gumbel rules' noise is PyTorch's on both paths (the estimator operator draws it with
    ``at::rand`` in the Python path's order): the gradients agree to rounding, not in law."""
    logits = torch.randn(2048, 16, generator=torch.Generator().manual_seed(3))
    on = _estimate(name, logits, 1.0, True, 11, False)
    off = _estimate(name, logits, 1.0, False, 11, False)
    assert torch.equal(on[0], off[0])
    scale = float(off[2].abs().max()) + on[3]
    torch.testing.assert_close(on[2], off[2], rtol=0, atol=2e-5 * scale)


def test_draws_agree_where_the_uniform_lands_on_a_boundary():
    """Rows with zero-probability categories anywhere, drawn many times: the kernel's index is
    the PyTorch path's (the same float64 prefix sums), so a zero-probability category is never
    drawn by either."""
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0], [0.2, 0.0, 0.0, 0.0, 0.8], [0, 0, 1.0, 0, 0]])
    probs = probs.repeat(400, 1)
    native.set_native_kernels(True)
    torch.manual_seed(3)
    on = draw_index(probs)
    native.set_native_kernels(False)
    torch.manual_seed(3)
    off = draw_index(probs)
    assert torch.equal(on, off)
    assert (probs.gather(-1, on) > 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_other_dtypes_and_layouts_take_the_pytorch_path(dtype):
    native.set_native_kernels(True)
    assert not native.usable(torch.zeros(3, 4, dtype=dtype))
    assert not native.usable(torch.zeros(4, 3).t())
    assert native.usable(torch.zeros(3, 4))
    sample, _ = pyro_reinmax.reinmax(torch.randn(6, 4).to(dtype), 1.3)
    assert sample.dtype == dtype and (sample.sum(-1) == 1).all()


def test_nan_rows_are_a_clear_error_on_the_kernel_path():
    native.set_native_kernels(True)
    with pytest.raises(ValueError, match="softmax\\(logits\\) is NaN"):
        draw_index(torch.tensor([[0.5, float("nan")], [0.5, 0.5]]), validate=True)


def test_nan_rows_through_the_operator_raise_the_packages_message():
    """The C++ operator's error for a NaN row becomes pyro_reinmax's own message (one wording)."""
    native.set_native_kernels(True)
    if native.EstimatorOperator.operator is None:
        pytest.skip(f"the estimator operator did not build: {native.EstimatorOperator.failure}")
    logits = torch.tensor([[0.5, float("nan")], [0.5, 0.5]])
    recipe, options = estimators.operator_arguments("reinmax", 1.3, (), logits.dtype)
    with pytest.raises(ValueError) as raised:
        native.estimate(logits, recipe, "reinmax", options, True)
    with pytest.raises(ValueError) as expected:
        raise_nan_rows()
    assert str(raised.value) == str(expected.value)
    assert raised.value.__context__ is None  # not chained to the operator's error
    sample, _ = native.estimate(logits, recipe, "reinmax", options, False)  # unvalidated: no error
    assert sample.shape == logits.shape


def test_off_by_environment(monkeypatch):
    monkeypatch.setenv("REINMAX_NATIVE", "0")
    native.set_native_kernels(None)
    assert native.native_kernels_status().startswith("off")
    assert not native.usable(torch.zeros(2, 3))


def test_an_unknown_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("REINMAX_NATIVE", "fast")
    native.set_native_kernels(None)
    with pytest.raises(ValueError, match="REINMAX_NATIVE must be 0, 1 or auto"):
        native.native_kernels_status()


def test_a_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("REINMAX_NATIVE", "auto")
    monkeypatch.setenv("REINMAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    monkeypatch.setattr(native.KERNELS, "library", None)
    native.set_native_kernels(None)
    with pytest.warns(RuntimeWarning, match="could not build its CPU kernels"):
        sample, _ = pyro_reinmax.reinmax(torch.randn(4, 3, requires_grad=True), 1.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pyro_reinmax.reinmax(torch.randn(4, 3), 1.3)  # once only
    assert native.native_kernels_status().startswith("off: the build failed")
    assert (sample.sum(-1) == 1).all()


def test_a_failed_build_is_an_error_when_required(monkeypatch, tmp_path):
    monkeypatch.setenv("REINMAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    monkeypatch.setattr(native.KERNELS, "library", None)
    with pytest.raises(RuntimeError, match="leave the kernels off"):
        native.set_native_kernels(True)


def test_a_cache_path_that_is_a_file_says_so_not_install_a_compiler(monkeypatch, tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("REINMAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native.KERNELS, "library", None)
    with pytest.raises(RuntimeError, match="Point REINMAX_CACHE_DIR at a writable folder") as error:
        native.set_native_kernels(True)
    assert "compiler" not in str(error.value)
    native.set_native_kernels(None)


def test_builds_are_cached_by_source_compiler_and_processor(monkeypatch, tmp_path):
    monkeypatch.setenv("REINMAX_CACHE_DIR", str(tmp_path))
    built = build("reinmax_torch", [KERNELS_SOURCE])
    assert built.parent == tmp_path and built.exists()
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left == [built.name, f"{built.name}.lock"]  # no scratch left behind

    def no_compiler(*args, **kwargs):
        raise AssertionError("a cached build was compiled again")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert build("reinmax_torch", [KERNELS_SOURCE]) == built
    monkeypatch.setenv("CC", "cc -DANOTHER_BUILD")
    with pytest.raises(AssertionError, match="compiled again"):
        build("reinmax_torch", [KERNELS_SOURCE])


def test_builds_needed_at_once_compile_once(monkeypatch, tmp_path):
    """Two builders of the same library at once: the second waits on the lock, then loads the
    first one's build instead of compiling it again."""
    monkeypatch.setenv("REINMAX_CACHE_DIR", str(tmp_path))
    commands = []
    run = subprocess.run

    def slow_run(command, *args, **kwargs):
        commands.append(command)
        time.sleep(0.2)  # both builders reach the lock while the first compiles
        return run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", slow_run)
    with ThreadPoolExecutor(2) as pool:
        built = list(pool.map(lambda _: build("reinmax_torch", [KERNELS_SOURCE]), range(2)))
    assert built[0] == built[1] and built[0].exists()
    assert len(commands) == 2  # one compile and one link


def test_a_compiler_without_openmp_gets_the_single_threaded_build(monkeypatch, tmp_path):
    monkeypatch.setenv("REINMAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "OPENMP", ("-fno-such-option",))
    loaded = native._load()
    assert len(list(tmp_path.glob("*.so"))) == 1  # the build without the failing option
    assert loaded.reinmax_draw_f64 is not None


def test_status_names_the_library():
    native.set_native_kernels(True)
    status = pyro_reinmax.native_kernels_status()
    assert status.startswith("on: ") and Path(status[4:]).exists()


@pytest.mark.parametrize("value", ["off", 0, 1, "1"])
def test_the_switch_takes_only_true_false_or_none(value):
    with pytest.raises(TypeError, match="True, False or None"):
        pyro_reinmax.set_native_kernels(value)
