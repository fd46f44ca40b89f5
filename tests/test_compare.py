"""reinmax-compare: every model runs a few steps on both backends, the results follow the schema,
the metrics match independent computations on tiny cases, and bad arguments are clear errors."""

import importlib
import json

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from reinmax_examples import compare, posteriors
from reinmax_examples.data import Corpus
from reinmax_examples.posteriors import log_predictive_density
from reinmax_examples.topics import document_completion

# Every method runs on both backends somewhere (reinforce and st in the sbn runs); one run keeps
# the default checkpoints, the others compute the metric twice.
TWICE = ["--checkpoints", "2"]
RUNS = [
    ("gmm", "pyro", "reinmax,enum,st-gumbel,gst,rloo", TWICE),
    ("gmm", "numpyro", "reinmax,enum,st-gumbel,gumbel-rao,reinmax-cv", TWICE),
    ("lda", "pyro", "reinmax,enum", ["--topics", "3", *TWICE]),
    ("lda", "numpyro", "reinmax,enum", ["--topics", "3", *TWICE]),
    ("vae", "pyro", "reinmax,enum,st,reinmax-rao", ["--dataset", "digits", *TWICE]),
    ("vae", "numpyro", "reinmax,enum,st", ["--dataset", "digits", *TWICE]),
    ("sbn", "pyro", "reinmax,st,reinforce,enum,hybrid,disarm", []),
    ("sbn", "numpyro", "reinmax,st,reinforce,enum,hybrid,disarm,rloo", TWICE),
    (
        "fhmm",
        "pyro",
        "reinmax,reinmax-local,hybrid,enum,gumbel-softmax,structured",
        ["--chains", "2", "--length", "6", *TWICE],
    ),
    (
        "fhmm",
        "numpyro",
        "reinmax,reinmax-local,hybrid,enum,gumbel-softmax,structured",
        ["--chains", "2", "--length", "6", *TWICE],
    ),
]


def _run(tmp_path, model, backend, methods, extra, steps=4, seeds=1, code=0):
    out = tmp_path / f"{model}-{backend}"
    argv = [model, "--backend", backend, "--methods", methods, "--steps", str(steps)]
    argv += ["--seeds", str(seeds), "--out", str(out), *extra]
    assert compare.main(argv) == code
    return json.loads((out / "results.json").read_text()), out


@pytest.mark.slow
@pytest.mark.parametrize(("model", "backend", "methods", "extra"), RUNS, ids=lambda v: str(v))
def test_every_model_runs_on_both_backends(tmp_path, model, backend, methods, extra):
    results, out = _run(tmp_path, model, backend, methods, extra)
    assert (out / "elbo.png").stat().st_size > 0
    assert results["model"] == model and results["backend"] == backend
    assert set(results) >= {"model", "backend", "metric_name", "config", "methods", "verdict"}
    for method in methods.split(","):
        entry = results["methods"][method]
        if entry.get("skipped"):
            assert model in ("vae", "sbn") and method in ("enum", "hybrid", "reinmax-local")
            continue
        assert len(entry["step"]) == len(entry["elbo"]) == len(entry["seconds"]) == 4
        assert entry["step"][-1] == 4 and np.isfinite(entry["elbo"]).all()
        assert np.isfinite(entry["metric"])
        curve = entry["metric_curve"]  # checkpoints, then the final metric at the last step
        assert curve["step"] == ([2, 4] if "--checkpoints" in extra else [1, 2, 3, 4])
        assert curve["metric"][-1] == pytest.approx(entry["metric"])
        assert np.all(np.diff(curve["seconds"]) >= 0) and np.isfinite(curve["metric"]).all()
        spread = entry["gradient_spread"]  # at the checkpoints before the last step
        if model == "fhmm" and method in ("enum", "hybrid"):  # every latent summed out:
            assert spread["step"] == []  # a guide without parameters has no gradient
        else:
            assert spread["step"] == curve["step"][:-1]
        assert all(v > 0 and np.isfinite(v) for v in spread["variance"])
    assert (out / "metric.png").stat().st_size > 0
    assert (out / "gradients.png").stat().st_size > 0
    if model == "gmm":
        assert (out / "forest.png").exists() and (out / "posterior_summary.csv").exists()
    if model == "lda":
        assert "topic 0:" in (out / "top_words.txt").read_text()
    if model == "fhmm":
        assert (results["config"]["chains"], results["config"]["length"]) == (2, 6)


@pytest.mark.slow
def test_several_seeds_give_mean_curves_and_per_seed_curves(tmp_path):
    results, _ = _run(tmp_path, "gmm", "pyro", "reinmax,st", [], steps=3, seeds=2)
    entry = results["methods"]["reinmax"]
    assert [run["seed"] for run in entry["per_seed"]] == [0, 1]
    curves = np.array([run["elbo"] for run in entry["per_seed"]])
    np.testing.assert_allclose(entry["elbo"], curves.mean(0))
    np.testing.assert_allclose(entry["elbo_min"], curves.min(0))
    assert entry["metric_std"] >= 0


def test_an_interrupted_run_keeps_what_it_measured(tmp_path, monkeypatch):
    from reinmax_examples import gmm_pyro

    real_fit = gmm_pyro.fit

    def interrupted_fit(problem, method, *, seed, config, on_step, **checkpointing):
        if method == "st":
            on_step(1, -500.0, 0.1)
            raise KeyboardInterrupt
        return real_fit(problem, method, seed=seed, config=config, on_step=on_step, **checkpointing)

    monkeypatch.setattr(gmm_pyro, "fit", interrupted_fit)
    results, _ = _run(tmp_path, "gmm", "pyro", "reinmax,st", [], steps=2, code=130)
    assert results["interrupted"] is True
    assert np.isfinite(results["methods"]["reinmax"]["metric"])
    assert results["methods"]["st"]["elbo"] == [-500.0]


def test_arviz_imported_again_after_the_daily_stamp_race(monkeypatch):
    """ArviZ's first import of a day can fail with FileNotFoundError when another process
    writes its stamp file at the same moment; the second import finds the stamp."""
    imported = importlib.import_module
    calls = []

    def racing(name, package=None):
        if name == "arviz":
            calls.append(name)
            if len(calls) == 1:
                raise FileNotFoundError("daily_warning.tmp -> daily_warning")
        return imported(name, package)

    monkeypatch.setattr(posteriors.importlib, "import_module", racing)
    assert posteriors.arviz().__name__ == "arviz"
    assert calls[:2] == ["arviz", "arviz"]  # the first raised


def test_log_predictive_density_on_a_three_point_mixture_by_hand():
    x = np.array([[-1.0], [0.5], [2.0]])
    draws = {  # two draws of a two-component mixture
        "weights": np.array([[0.3, 0.7], [0.6, 0.4]]),
        "locs": np.array([[[-1.0], [2.0]], [[0.0], [1.0]]]),
        "scales": np.array([[[1.0], [0.5]], [[2.0], [1.0]]]),
    }
    expected = 0.0
    for point in x[:, 0]:
        per_draw = [
            sum(
                draws["weights"][s, k]
                * scipy.stats.norm.pdf(point, draws["locs"][s, k, 0], draws["scales"][s, k, 0])
                for k in range(2)
            )
            for s in range(2)
        ]
        expected += np.log(np.mean(per_draw))
    assert log_predictive_density(x, draws) == pytest.approx(expected, rel=1e-12)


def test_document_completion_against_a_direct_maximum_likelihood():
    """EM on the seen half converges to the maximum-likelihood topic proportions; the scored half's
    log-likelihood with those proportions, by hand."""
    phi = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    words = np.array([0, 2, 0, 1, 2, 2, 0, 2])
    corpus = Corpus(["a", "b", "c"], words, np.zeros(len(words), dtype=int), 1)
    seen, scored = words[0::2], words[1::2]

    def negative_log_likelihood(t):
        theta = np.array([t, 1 - t])
        return -np.log(theta @ phi[:, seen]).sum()

    best = scipy.optimize.minimize_scalar(
        negative_log_likelihood, bounds=(0, 1), method="bounded", options={"xatol": 1e-10}
    )
    theta = np.array([best.x, 1 - best.x])
    expected = np.log(theta @ phi[:, scored]).mean()
    assert document_completion(phi, corpus, iterations=2000) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "invalid choice"),
        (["gmm", "--methods", "reinmax,magic"], "unknown method"),
        (["gmm", "--steps", "0"], "must be a finite number > 0"),
        (["gmm", "--lr", "inf"], "must be a finite number > 0"),
        (["gmm", "--temperature", "nan"], "must be a finite number > 0"),
        (["gmm", "--backend", "stan"], "invalid choice"),
        (["gmm", "--latent", "8x4"], "does not apply to gmm"),
        (["lda", "--dataset", "iris"], "does not apply to lda"),
        (["gmm", "--chains", "3"], "does not apply to gmm"),
        (["vae", "--length", "6"], "does not apply to vae"),
        (["gmm", "--processes", "2"], "--processes is for vae and lda"),
        (["vae", "--backend", "numpyro", "--processes", "2"], "numpyro uses --devices"),
        (["lda", "--devices", "2"], "--devices is for --backend numpyro; pyro uses --processes"),
        (["vae", "--processes", "0"], "must be a finite number > 0"),
        (["regimes", "--backend", "numpyro"], "regimes runs in Pyro only"),
    ],
)
def test_bad_arguments_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare.main(argv)
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["vae", "--latent", "3x3"], "--latent must be one of"),
        (["gmm", "--dataset", "mnist"], "iris or wine"),
        (["fhmm", "--chains", "13"], "at most 12"),
        (["gmm", "--components", "151"], "more than the 150 rows of iris"),
    ],
)
def test_bad_model_options_are_clear_errors(tmp_path, argv, message, capsys):
    assert compare.main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_factorial_hmm_forward_algorithm_against_brute_force():
    """The fhmm metric against a sum over every joint state path of two short sequences."""
    import itertools

    from reinmax_examples.factorial_hmm import (
        STATES,
        log_likelihood_per_step,
        sequences,
        true_parameters,
    )

    p = true_parameters(2)
    x = sequences(2)[1][:2, :3]
    total = 0.0
    for sequence in x:
        paths = []
        for path in itertools.product(itertools.product(range(STATES), repeat=2), repeat=3):
            log_p = 0.0
            for t, state in enumerate(path):
                for m in range(2):
                    previous = p.init[m] if t == 0 else p.trans[m][path[t - 1][m]]
                    log_p += np.log(previous[state[m]])
                loc = p.weights[0][state[0]] + p.weights[1][state[1]]
                log_p += scipy.stats.norm.logpdf(sequence[t], loc, p.scale).sum()
            paths.append(log_p)
        total += scipy.special.logsumexp(paths)
    assert log_likelihood_per_step(x, p) == pytest.approx(total / x[:, :, 0].size, rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_hybrid_equals_enumeration_where_it_sums_every_site_out(tmp_path, backend):
    """The same start (the globals' start fully given: no method's set-up draws it, and no
    method's training moves the shared one), the same steps: the same objective gives the same
    curve and metric, whichever ELBO computes it."""
    results, _ = _run(tmp_path, "gmm", backend, "enum,hybrid", ["--checkpoints", "2"], steps=6)
    enum, hybrid = results["methods"]["enum"], results["methods"]["hybrid"]
    np.testing.assert_allclose(hybrid["elbo"], enum["elbo"], rtol=1e-9)
    assert hybrid["metric"] == pytest.approx(enum["metric"], rel=1e-9)


def test_regimes_forward_algorithm_against_brute_force():
    """The regimes metric against a sum over every path of two short sequences."""
    import itertools

    from reinmax_examples.regimes import (
        REGIMES,
        log_likelihood_per_step,
        sequences,
        true_parameters,
    )

    p = true_parameters()
    x = sequences(4)[1][:2]
    total = 0.0
    for sequence in x:
        paths = []
        for path in itertools.product(range(REGIMES), repeat=len(sequence)):
            log_p = np.log(p.init[path[0]])
            log_p += sum(np.log(p.trans[a, b]) for a, b in itertools.pairwise(path))
            log_p += scipy.stats.norm.logpdf(sequence, p.levels[list(path)], p.scale).sum()
            paths.append(log_p)
        total += scipy.special.logsumexp(paths)
    assert log_likelihood_per_step(x, p) == pytest.approx(total / x.size, rel=1e-12)


@pytest.mark.slow
def test_regimes_a_plain_loop_of_integer_sites_where_enumeration_fails(tmp_path):
    """100 sites in a plain loop: enumeration fails (one dim per site), hybrid sums the first
    steps out and samples the rest, the -local methods and REINFORCE train, the mean-field
    methods are skipped with the reason."""
    methods = "reinmax-local,st-local,hybrid,enum,reinforce,reinmax"
    results, _ = _run(tmp_path, "regimes", "pyro", methods, ["--length", "100"], steps=3, code=1)
    entries = results["methods"]
    assert "64" in entries["enum"]["failed"]
    assert "integer sites" in entries["reinmax"]["skipped"]
    for method in ("reinmax-local", "st-local", "hybrid", "reinforce"):
        assert np.isfinite(entries[method]["metric"])


def test_first_to_reach_names_the_fastest_method_to_the_best_metric():
    def run(seconds, metric):
        return {
            "metric": metric[-1],
            "metric_curve": {"step": [1, 2, 3], "seconds": seconds, "metric": metric},
        }

    results = {
        "metric_name": "metric",
        "tie": 0.5,
        "methods": {
            "slow": run([1, 2, 3], [0, 9.6, 10]),
            "fast": run([0.1, 0.2, 0.3], [0, 9.7, 9.7]),
            "dropped": run([0.1, 0.2, 0.3], [9.8, 9.8, 9.0]),  # within the tie, then not
            "late": run([1, 2, 3], [9.6, 1, 9.6]),  # within it again from the last point
            "never": run([1, 2, 3], [1, 2, 5]),
            "skipped": {"skipped": "why", "metric": None},
        },
    }
    line = compare.first_to_reach(results)
    assert line == (
        "First within 0.5 of the best metric to the end: fast, from 0.2 s of training (then slow "
        "2 s, late 3 s); not within it at the end: dropped, never."
    )
    assert line in compare.verdict(results)


def test_checkpoints_are_evenly_spaced_and_their_time_is_not_training_time():
    import time

    from reinmax_examples.methods import TrainingClock, checkpoint_steps

    assert checkpoint_steps(400, 8) == {50, 100, 150, 200, 250, 300, 350}
    assert checkpoint_steps(4, 2) == {2} and checkpoint_steps(1, 8) == set()
    clock = TrainingClock()
    with clock.paused():
        time.sleep(0.2)
        assert clock.seconds() < 0.1  # a checkpoint reads the clock inside its pause
    assert clock.seconds() < 0.1


def _failing(module, failing_method, error):
    real_fit = module.fit

    def fit(problem, method, **options):
        if method == failing_method:
            options["on_step"](1, -500.0, 0.1)
            raise error
        return real_fit(problem, method, **options)

    return fit


def test_a_failing_method_keeps_the_others(tmp_path, monkeypatch, capsys):
    from reinmax_examples import gmm_pyro

    monkeypatch.setattr(gmm_pyro, "fit", _failing(gmm_pyro, "st", FloatingPointError("boom")))
    results, out = _run(tmp_path, "gmm", "pyro", "st,reinmax", [], steps=2, code=1)
    assert results["methods"]["st"]["failed"] == "FloatingPointError: boom"
    assert np.isfinite(results["methods"]["reinmax"]["metric"])
    assert "st failed: FloatingPointError: boom" in results["verdict"]
    assert "st failed" in capsys.readouterr().err
    assert (out / "elbo.png").exists()


def test_a_failing_report_keeps_the_measurements(tmp_path, monkeypatch):
    from reinmax_examples import gmm_pyro

    def report(*_):
        raise RuntimeError("no plot today")

    monkeypatch.setattr(gmm_pyro, "report", report)
    results, _ = _run(tmp_path, "gmm", "pyro", "reinmax", [], steps=2, code=1)
    assert results["report_error"] == "RuntimeError: no plot today"
    assert np.isfinite(results["methods"]["reinmax"]["metric"])


def test_a_reused_output_folder_holds_only_the_new_run(tmp_path):
    out = tmp_path / "gmm-pyro"
    out.mkdir()
    (out / "top_words.txt").write_text("an older lda run\n")
    (out / "extra.txt").write_text("listed by the older run\n")
    (out / "results.json").write_text(json.dumps({"methods": {"enum": {}}, "files": ["extra.txt"]}))
    (out / "notes.txt").write_text("the user's own file\n")
    results, _ = _run(tmp_path, "gmm", "pyro", "reinmax", [], steps=2)
    assert set(results["methods"]) == {"reinmax"}
    assert not (out / "top_words.txt").exists() and not (out / "extra.txt").exists()
    assert (out / "notes.txt").exists()
    assert set(results["files"]) == {p.name for p in out.iterdir()} - {"notes.txt"}


def test_add_trains_only_the_new_methods_and_keeps_the_run(tmp_path, monkeypatch):
    from reinmax_examples import gmm_pyro

    first, out = _run(tmp_path, "gmm", "pyro", "reinmax,st", [], steps=2)
    trained = []
    real_fit = gmm_pyro.fit

    def counted_fit(problem, method, **options):
        trained.append(method)
        return real_fit(problem, method, **options)

    monkeypatch.setattr(gmm_pyro, "fit", counted_fit)
    older = json.loads((out / "results.json").read_text())
    del older["config"]["devices"], older["metric_unit"]  # as an older version wrote it
    (out / "results.json").write_text(json.dumps(older))
    results, _ = _run(tmp_path, "gmm", "pyro", "gst,st", ["--add"], steps=2)
    assert trained == ["gst", "st"]
    assert results["additions"] == [
        {"methods": ["gst", "st"], "settings_the_run_did_not_record": {"devices": 1}}
    ]
    assert results["config"]["methods"] == ["reinmax", "st", "gst"]
    assert results["methods"]["reinmax"] == first["methods"]["reinmax"]
    assert np.isfinite(results["methods"]["gst"]["metric"])
    assert "gst" in results["verdict"] or "reinmax" in results["verdict"]
    assert (out / "forest.png").exists() and "forest.png" in results["files"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "3"], "steps 2 there, 3 here"),
        (["--backend", "numpyro", "--steps", "2"], "backend 'pyro' there, 'numpyro' here"),
    ],
)
def test_add_refuses_a_run_with_other_settings(tmp_path, argv, message, capsys):
    _, out = _run(tmp_path, "gmm", "pyro", "reinmax", [], steps=2)
    before = (out / "results.json").read_text()
    assert compare.main(["gmm", "--methods", "st", "--out", str(out), "--add", *argv]) == 2
    assert message in capsys.readouterr().err
    assert (out / "results.json").read_text() == before


def test_add_needs_a_run_to_add_to(tmp_path, capsys):
    assert compare.main(["gmm", "--steps", "2", "--out", str(tmp_path), "--add"]) == 2
    assert "no run to add to" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare.main(["gmm", "--add"])
    assert "--add needs --out" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert compare.main(["gmm", "--steps", "2", "--out", str(blocker / "out")]) == 2
    assert "cannot write there" in capsys.readouterr().err


def test_files_are_written_atomically(tmp_path):
    from reinmax_examples.artefacts import write_atomically, write_text

    target = write_text(tmp_path / "results.json", "complete\n")

    def fails_half_way(path):
        path.write_text("trunc")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, fails_half_way)
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_ctrl_c_during_jax_compilation_exits_130_and_keeps_the_finished_methods(
    tmp_path, monkeypatch
):
    import jax

    real_jit, compiled = jax.jit, []

    def jit(fn=None, *args, **kwargs):
        if fn is None:  # the decorator form, jax.jit(static_argnames=...)
            return lambda fn: jit(fn, *args, **kwargs)
        if getattr(fn, "__name__", "") == "update":  # SVI.update: one per method
            compiled.append(fn)
            if len(compiled) == 2:

                def interrupted(*_, **__):
                    raise KeyboardInterrupt

                return interrupted
        return real_jit(fn, *args, **kwargs)

    monkeypatch.setattr(jax, "jit", jit)
    digits = ["--dataset", "digits", "--checkpoints", "1"]  # the cheapest NumPyro set-up
    results, _ = _run(tmp_path, "vae", "numpyro", "reinmax,st", digits, steps=2, code=130)
    assert results["interrupted"] is True
    assert np.isfinite(results["methods"]["reinmax"]["metric"])
    assert "st" not in results["methods"]  # interrupted while compiling: nothing measured


def test_help_states_the_defaults_each_model_uses(capsys):
    with pytest.raises(SystemExit):
        compare.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for model in ("gmm", "lda", "fhmm", "sbn"):
        module = importlib.import_module(f"reinmax_examples.{model}_pyro")
        config = module.configure(compare.parser().parse_args([model]))
        assert (
            f"{model}: --steps {config['steps']}, --lr {config['lr']:g}, "
            f"--temperature {config['temperature']:g}"
        ) in text
    from reinmax_examples.vae_pyro import configure

    assert f"vae: --steps {configure(compare.parser().parse_args(['vae']))['steps']}" in text
    for latent in ("8x4", "4x24", "8x16", "16x12", "64x8", "10x30"):
        config = configure(compare.parser().parse_args(["vae", "--latent", latent]))
        assert (
            f"{latent}: {config['optimiser']}, lr {config['lr']:g}, "
            f"temperature {config['temperature']:g}"
        ) in text
