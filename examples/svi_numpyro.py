"""Guides, losses and the training loop of every method, for the NumPyro examples."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.initialization import init_to_feasible
from numpyro.optim import optax_to_numpyro

import numpyro_reinmax as nr
from numpyro_reinmax.infer import (
    AutoReinMax,
    TraceDisARM_ELBO,
    TraceLocalEnum_ELBO,
    TraceMeanField_ELBO,
    TraceRLOO_ELBO,
)
from numpyro_reinmax.infer.data_parallel import data_mesh, place_state, shard_data
from reinmax_examples.methods import (
    DISARM_PAIRS,
    ESTIMATOR,
    GRADIENT_DRAWS,
    LOCAL_LR_MULTIPLIER,
    LOCAL_METHODS,
    RLOO_PARTICLES,
    TrainingClock,
    probe_gradients,
    record_every,
)
from reinmax_examples.parallel import SINGLE, DataParallel
from reinmax_examples.relaxation_numpyro import GumbelSoftmax_ELBO

# The mixture and topic models run in float64, as in Pyro: a float32 simplex over a vocabulary
# underflows. Models that want float32 (the VAE) create their arrays in float32 explicitly.
jax.config.update("jax_enable_x64", True)


def init_to_value(site=None, values: dict | None = None):
    """An autoguide's start: ``values`` for the sites it names, NumPyro's feasible point (zero in
    the unconstrained space) for the others. NumPyro's own ``init_to_value`` draws the others at
    random, from whatever key the guide's set-up holds, which differs between methods. Called
    without a site, the strategy (a ``partial``, as NumPyro's autoguides expect)."""
    if site is None:
        return partial(init_to_value, values=values or {})
    if site["type"] == "sample" and not site["is_observed"] and site["name"] in values:
        return values[site["name"]]
    return init_to_feasible(site)


def guide_model_loss(
    model, method, *, discrete_sites, temperature, init_loc_fn, encoders=None, create_plates=None
):
    """The guide, the model as that method runs it, and the ELBO."""
    continuous_guide = (
        AutoNormal if init_loc_fn is None else partial(AutoNormal, init_loc_fn=init_loc_fn)
    )
    if method == "enum":
        guide = continuous_guide(handlers.block(model, hide=discrete_sites))
        return guide, nr.enum_onehot(model), TraceEnum_ELBO()
    guide = AutoReinMax(
        model,
        estimator=ESTIMATOR[method],
        temperature=temperature,
        encoders=encoders,
        continuous_guide=continuous_guide,
        create_plates=create_plates,
        enumerate="auto" if method == "hybrid" else None,
        dependencies="model" if method == "structured" else None,
    )
    if method == "reinforce":
        return guide, model, TraceGraph_ELBO()
    if method == "rloo":
        return guide, model, TraceRLOO_ELBO(num_particles=RLOO_PARTICLES)
    if method == "disarm":
        return guide, model, TraceDisARM_ELBO(num_pairs=DISARM_PAIRS)
    if method in LOCAL_METHODS:
        return guide, model, TraceLocalEnum_ELBO()
    if method == "gumbel-softmax":
        return guide, model, GumbelSoftmax_ELBO(temperature)
    return guide, model, TraceMeanField_ELBO()


def default_optimizer(lr: float):
    """Adam, the per-datum logits ``LOCAL_LR_MULTIPLIER`` times faster than the globals."""

    def labels(params):
        return {name: "local" if name.endswith("_logits") else "global" for name in params}

    rates = {"local": optax.adam(lr * LOCAL_LR_MULTIPLIER), "global": optax.adam(lr)}
    return optax_to_numpyro(
        optax.chain(optax.clip_by_global_norm(10.0), optax.multi_transform(rates, labels))
    )


def train(
    model,
    guide,
    loss,
    steps: int,
    optimizer,
    seed: int,
    arguments: Callable,
    on_step: Callable,
    on_checkpoint: Callable | None = None,
    checkpoints=(),
    on_compile: Callable | None = None,
    parallel: DataParallel = SINGLE,
):
    """SVI for ``steps`` jitted steps from ``seed``; returns the parameters. ``arguments(step)``
    gives the model's arguments; ``on_step(step, elbo, seconds)`` records the curve, the ELBO
    averaged over the steps since the last record; ``on_checkpoint(step, seconds, (guide,
    params))`` is called at the steps in ``checkpoints``, its own time not counted in ``seconds``.
    Compilation happens before the clock starts; ``on_compile(seconds)`` gets its duration. On
    several devices (``parallel``), every array argument is split along its leading (data) axis
    over the devices, and the state's leaves with that axis too (per-datum logits); the rest is
    replicated (``numpyro_reinmax.infer.data_parallel``)."""
    svi = SVI(model, guide, optimizer, loss)
    first = arguments(0)
    state = svi.init(jax.random.PRNGKey(seed), *first)
    if parallel.active:
        mesh = data_mesh(parallel.size)
        unsharded = arguments
        state = place_state(state, mesh, data_length=len(first[0]))

        def arguments(step):
            return shard_data(unsharded(step), mesh)

    update = jax.jit(svi.update)
    began = time.perf_counter()
    jax.block_until_ready(update(state, *arguments(0)))  # compile before timing
    if on_compile is not None:
        on_compile(time.perf_counter() - began)
    clock = TrainingClock()
    every, window = record_every(steps), []
    gradients = GradientProbe(model, guide, loss, seed)
    for step in range(steps):
        state, loss_value = update(state, *arguments(step))
        window.append(-float(loss_value))
        if (step + 1) % every == 0 or step == steps - 1:
            on_step(step + 1, sum(window) / len(window), clock.seconds())
            window.clear()
        if on_checkpoint is not None and step + 1 in checkpoints:
            with clock.paused():
                params = svi.get_params(state)
                if not parallel.active:
                    probe_gradients(step + 1, partial(gradients, params, arguments(step)))
                on_checkpoint(step + 1, clock.seconds(), (guide, params))
    return svi.get_params(state)


class GradientProbe:
    """``probe(params, arguments)``: the gradient of the loss in the guide's parameters,
    flattened, for ``GRADIENT_DRAWS`` fresh keys at ``params`` (for the spread that
    ``reinmax-compare`` records). One compiled program serves every checkpoint of a run with the
    same arguments: the parameters are its inputs, not constants baked into a new program at each
    checkpoint (which recompiled the local ELBO's vmapped gradient every time)."""

    def __init__(self, model, guide, loss, seed: int) -> None:
        self.model, self.guide, self.loss, self.seed = model, guide, loss, seed
        self.keys = jax.random.split(jax.random.PRNGKey(seed + 1), GRADIENT_DRAWS)
        self._compiled = None  # (the arguments it was built for, guide names, program)

    def __call__(self, params: dict, arguments: tuple) -> list:
        if self._compiled is None or any(
            a is not b for a, b in zip(self._compiled[0], arguments, strict=True)
        ):
            self._compiled = (arguments, *self._compile(params, arguments))
        _, names, program = self._compiled
        if not names:  # every latent summed out: nothing in the guide to differentiate
            return []
        guide_params = {n: params[n] for n in names}
        others = {n: v for n, v in params.items() if n not in guide_params}
        return list(np.asarray(program(guide_params, others)))

    def _compile(self, params: dict, arguments: tuple) -> tuple[list, Callable]:
        seeded = handlers.seed(
            handlers.substitute(self.guide, data=params), jax.random.PRNGKey(self.seed)
        )
        trace = handlers.trace(seeded).get_trace(*arguments)
        names = [name for name, site in trace.items() if site["type"] == "param"]
        model, guide, loss, keys = self.model, self.guide, self.loss, self.keys

        def gradients(guide_params: dict, others: dict):
            def gradient(key):
                def value(guide_params):
                    return loss.loss(key, {**others, **guide_params}, model, guide, *arguments)

                grads = jax.grad(value)(guide_params)
                return jnp.concatenate([jnp.ravel(grads[n]) for n in names])

            return jax.vmap(gradient)(keys)

        return names, jax.jit(gradients)


def fit_model(
    model,
    method: str,
    *,
    config: dict,
    seed: int,
    arguments: Callable,
    on_step: Callable,
    on_checkpoint: Callable | None = None,
    checkpoints=(),
    on_compile: Callable | None = None,
    **options,
):
    """Fit ``model`` (its discrete sites ``discrete_sites``, ``["z"]`` by default) by ``method``
    with ``config``'s ``steps``,
    ``lr`` and ``temperature``; returns (guide, parameters). ``options``: ``init_loc_fn``,
    ``encoders``, ``create_plates``, ``discrete_sites`` (see ``guide_model_loss``),
    ``optimizer`` (else ``default_optimizer``), and ``parallel`` (see ``train``)."""
    optimizer = options.pop("optimizer", None) or default_optimizer(config["lr"])
    options.setdefault("init_loc_fn", None)
    options.setdefault("discrete_sites", ["z"])
    parallel = options.pop("parallel", SINGLE)
    guide, fitted_model, loss = guide_model_loss(
        model, method, temperature=config["temperature"], **options
    )
    params = train(
        fitted_model,
        guide,
        loss,
        config["steps"],
        optimizer,
        seed,
        arguments,
        on_step,
        on_checkpoint,
        checkpoints,
        on_compile,
        parallel,
    )
    return guide, params
