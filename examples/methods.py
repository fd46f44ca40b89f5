"""The methods that ``reinmax-compare`` runs, shared by both backends.

Every method fits the same model, written once with one-hot sites; only the guide and the ELBO
change:

| method | discrete sites | ELBO |
| --- | --- | --- |
| reinmax | ReinMax guide sites (``AutoReinMax``) | ``TraceMeanField_ELBO`` (analytic KL) |
| reinmax-local | ReinMax guide sites | ``TraceLocalEnum_ELBO`` (each factor linearised) |
| st-local | straight-through guide sites | local-enum (the local expectation gradient) |
| hybrid | cheap sites summed out, ReinMax for the rest (``enumerate="auto"``) | local-enum |
| structured | each site drawn given its posterior parents (``dependencies="model"``) | local-enum |
| st | straight-through guide sites | ``TraceMeanField_ELBO`` |
| st-gumbel | straight-through Gumbel-softmax guide sites | ``TraceMeanField_ELBO`` |
| gst | gapped straight-through (GST-1.0) guide sites | ``TraceMeanField_ELBO`` |
| gumbel-rao | Gumbel-Rao (GR-MCK, 10 conditional draws) guide sites | ``TraceMeanField_ELBO`` |
| reinmax-rao | ReinMax-Rao guide sites | ``TraceMeanField_ELBO`` |
| reinmax-cv | ReinMax-CV guide sites | ``TraceMeanField_ELBO`` |
| rloo | non-reparameterized guide sites, 4 particles, leave-one-out | ``TraceRLOO_ELBO`` |
| disarm | non-reparameterized Bernoulli guide sites, 2 antithetic pairs | ``TraceDisARM_ELBO`` |
| reinforce | non-reparameterized guide sites (score function) | ``TraceGraph_ELBO`` |
| gumbel-softmax | Concrete draws, the model relaxed to match (``relaxation_*.py``) | relaxed |
| enum | summed out exactly in the model | ``TraceEnum_ELBO`` |

local-enum is ``TraceLocalEnum_ELBO``. Continuous latent sites get the same ``AutoNormal`` guide
in every method. The mean-field ELBOs are ``pyro_reinmax.infer.TraceMeanField_ELBO`` and
``numpyro_reinmax.infer.TraceMeanField_ELBO`` (Pyro's own mis-scores ``AutoNormal``'s sites of
constrained latents).
"""

import contextlib
import time
from collections.abc import Callable
from contextvars import ContextVar

DEFAULT_METHODS = ("reinmax", "reinmax-local", "hybrid", "enum", "reinforce", "st", "st-gumbel")
"""The methods ``reinmax-compare`` runs unless ``--methods`` says otherwise."""
METHODS = (
    *DEFAULT_METHODS,
    *("gst", "gumbel-rao", "reinmax-rao", "reinmax-cv", "rloo", "disarm", "st-local"),
    "gumbel-softmax",
    "structured",
)
LOCAL_METHODS = ("reinmax-local", "st-local", "hybrid", "structured")
"""The methods under ``TraceLocalEnum_ELBO``."""
RLOO_PARTICLES = 4
DISARM_PAIRS = 2
"""Every method ``--methods`` accepts: the defaults and the other estimators of the package."""

METHOD_COLOURS = dict(
    zip(
        METHODS,
        (
            *("#d62728", "#ff7f0e", "#9467bd", "#1f77b4", "#7f7f7f", "#2ca02c", "#17becf"),
            *("#8c564b", "#bcbd22", "#e377c2", "#aec7e8", "#c7c7c7", "#98df8a", "#ffbb78"),
            *("#f7b6d2", "#000000"),
        ),
        strict=True,
    )
)
"""One fixed colour per method in every plot (matplotlib's tab10 colours, then tab20's)."""

ESTIMATOR = {
    "reinmax": "reinmax",
    "reinmax-local": "reinmax",
    "st-local": "straight_through",
    "hybrid": "reinmax",
    "structured": "auto",  # straight-through under local-enum, unbiased there
    "st": "straight_through",
    "st-gumbel": "gumbel_straight_through",
    "gst": "gapped_straight_through",
    "gumbel-rao": "gumbel_rao",
    "reinmax-rao": "reinmax_rao",
    "reinmax-cv": "reinmax_cv",
    "reinforce": "score_function",
    "rloo": "score_function",
    "disarm": "score_function",
    "gumbel-softmax": "reinmax",  # the guide's logits; GumbelSoftmax_ELBO relaxes its draws
}


MIXTURE_NOT_RELAXED = "OneHotMixture selects a component by a one-hot assignment, not a relaxed one"
"""Why ``gumbel-softmax`` skips the mixture and topic models."""


def relaxed_integer_site(name: str) -> str:
    """``gumbel-softmax``'s error for an integer site (``relaxation_pyro.py``, ``..._numpyro``)."""
    return (
        f"gumbel-softmax: site {name!r} is an integer Categorical; a model that indexes with it "
        "cannot read a relaxed value (write it one-hot, or use the -local methods)"
    )


class ConfigurationError(ValueError):
    """A bad command-line option for the chosen model."""


LOCAL_LR_MULTIPLIER = 4.0
"""Local variational parameters (per-datum logits) move ``LOCAL_LR_MULTIPLIER`` times faster than
the globals, for every method alike."""


CHECKPOINTS = 8
"""How many times during training ``reinmax-compare`` computes the exact metric (the last one at
the end), for the metric against steps and wall-clock seconds."""


def checkpoint_steps(steps: int, count: int = CHECKPOINTS) -> set[int]:
    """``count`` evenly spaced steps before the last (the last step is evaluated anyway)."""
    return {round(steps * k / count) for k in range(1, count)} - {0, steps}


GRADIENT_DRAWS = 8
"""How many gradients, at the same parameters and fresh draws, a checkpoint's spread is from."""
_GRADIENT_PROBE: ContextVar[Callable | None] = ContextVar("gradient_probe", default=None)


@contextlib.contextmanager
def probing_gradients(record: Callable[[int, dict], None]):
    """While active, the training loops call ``record(step, spread)`` at every checkpoint with
    the spread of the guide parameters' gradient over :data:`GRADIENT_DRAWS` fresh draws at the
    current parameters (:func:`spread`); ``reinmax-compare`` records it per method."""
    token = _GRADIENT_PROBE.set(record)
    try:
        yield
    finally:
        _GRADIENT_PROBE.reset(token)


def probe_gradients(step: int, gradients: Callable[[], list]) -> None:
    """At a checkpoint: hand :func:`spread` of ``gradients()`` (flat gradient vectors, one per
    draw, as NumPy arrays) to the active probe, if any. A loss that cannot give a
    differentiable value, or a guide without parameters, records nothing."""
    record = _GRADIENT_PROBE.get()
    if record is None:
        return
    try:
        samples = gradients()
    except (AttributeError, NotImplementedError):
        return
    if samples:
        record(step, spread(samples))


def spread(samples: list) -> dict:
    """The total variance of gradient vectors (the trace of their covariance) and the same
    relative to the squared norm of their mean (scale-free, comparable between methods)."""
    import numpy as np

    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in samples])
    variance = float(stacked.var(0, ddof=1).sum())
    mean_square = float((stacked.mean(0) ** 2).sum())
    return {"variance": variance, "relative": variance / mean_square if mean_square else None}


class TrainingClock:
    """Seconds of training: time spent inside ``paused()`` (evaluations) is not counted, also
    when read inside it."""

    def __init__(self) -> None:
        self._start, self._paused, self._paused_at = time.perf_counter(), 0.0, None

    def seconds(self) -> float:
        now = time.perf_counter() if self._paused_at is None else self._paused_at
        return now - self._start - self._paused

    @contextlib.contextmanager
    def paused(self):
        self._paused_at = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - self._paused_at
            self._paused_at = None


def record_every(steps: int) -> int:
    """Curves keep about 200 points."""
    return max(1, steps // 200)


def minibatches(rng, size: int, batch: int):
    """``indices(step)``: the rows of step ``step``'s minibatch, a fresh permutation each epoch
    (the whole data set when it is smaller than a batch)."""
    batch = min(batch, size)
    per_epoch, order = size // batch, []

    def indices(step: int):
        if step % per_epoch == 0:
            order[:] = [rng.permutation(size)]
        start = (step % per_epoch) * batch
        return order[0][start : start + batch]

    return indices


def demo(module, config: dict, methods: list[str]) -> None:
    """Fit ``module``'s model (an example module) by each method from seed 0 and print its metric:
    what each example does when run as a script."""
    problem = module.Problem(config, seed=0)
    for method in methods:
        fitted = module.fit(problem, method, seed=0, config=config, on_step=lambda *_: None)
        print(f"{method:>14}: {module.METRIC} {module.evaluate(problem, fitted)['metric']:.4f}")
