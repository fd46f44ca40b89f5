"""Guides, losses and the training loop of every method, for the Pyro examples."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate
from pyro.infer.autoguide import AutoNormal
from pyro.infer.util import zero_grads
from pyro.optim import ClippedAdam
from torch import distributed
from torch.nn.parallel import DistributedDataParallel

from pyro_reinmax.infer import (
    AutoReinMax,
    TraceDisARM_ELBO,
    TraceLocalEnum_ELBO,
    TraceMeanField_ELBO,
    TraceRLOO_ELBO,
)
from pyro_reinmax.infer.data_parallel import DataParallelLoss
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
from reinmax_examples.relaxation_pyro import GumbelSoftmax_ELBO


def guide_model_loss(
    model,
    method,
    *,
    discrete_sites,
    temperature,
    max_plate_nesting,
    init_loc_fn,
    encoders=None,
    create_plates=None,
):
    """The guide, the model as that method runs it, and the ELBO."""
    continuous_guide = (
        AutoNormal
        if init_loc_fn is None
        else partial(AutoNormal, init_loc_fn=copied_values(init_loc_fn))
    )
    if method == "enum":
        guide = continuous_guide(poutine.block(model, hide=discrete_sites))
        return guide, config_enumerate(model), TraceEnum_ELBO(max_plate_nesting=max_plate_nesting)
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
        return guide, model, TraceGraph_ELBO(max_plate_nesting=max_plate_nesting)
    if method == "rloo":
        rloo = TraceRLOO_ELBO(num_particles=RLOO_PARTICLES, max_plate_nesting=max_plate_nesting)
        return guide, model, rloo
    if method == "disarm":
        disarm = TraceDisARM_ELBO(num_pairs=DISARM_PAIRS, max_plate_nesting=max_plate_nesting)
        return guide, model, disarm
    if method in LOCAL_METHODS:
        return guide, model, TraceLocalEnum_ELBO(max_plate_nesting=max_plate_nesting)
    if method == "gumbel-softmax":
        relaxation = GumbelSoftmax_ELBO(temperature, max_plate_nesting=max_plate_nesting)
        return guide, model, relaxation
    return guide, model, TraceMeanField_ELBO(max_plate_nesting=max_plate_nesting)


def copied_values(init_loc_fn: Callable) -> Callable:
    """``init_loc_fn`` returning copies: an autoguide keeps the tensor it is given as its
    parameter (for an unconstrained site) and the optimizer updates it in place, so a start
    shared by several methods would be moved by the first method's training."""

    def init(site):
        return init_loc_fn(site).detach().clone()

    return init


def guide_gradients(model, guide, loss, arguments: tuple, draws: int = GRADIENT_DRAWS) -> list:
    """The gradient of the loss in the guide's parameters, flattened, for ``draws`` fresh draws
    at the current parameters (for the spread ``reinmax-compare`` records)."""
    with poutine.trace(param_only=True) as capture:
        guide(*arguments)
    params = [site["value"].unconstrained() for site in capture.trace.nodes.values()]
    if not params:  # every latent summed out: nothing in the guide to differentiate
        return []
    samples = []
    for _ in range(draws):
        if isinstance(loss, TraceGraph_ELBO):  # no differentiable_loss: gradients land in .grad
            for parameter in params:
                parameter.grad = None
            loss.loss_and_grads(model, guide, *arguments)
            grads = [parameter.grad for parameter in params]
        else:
            value = loss.differentiable_loss(model, guide, *arguments)
            grads = torch.autograd.grad(value, params, allow_unused=True)
        flat = [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for p, g in zip(params, grads, strict=True)
        ]
        samples.append(torch.cat(flat).detach().cpu().numpy())
    for parameter in params:  # SVI's own step starts from clean gradients
        parameter.grad = None
    return samples


def default_optimizer(lr: float) -> ClippedAdam:
    """Adam, the per-datum logits ``LOCAL_LR_MULTIPLIER`` times faster than the globals."""

    def rate(name, _):
        local = ".logits." in name
        return {"lr": lr * LOCAL_LR_MULTIPLIER if local else lr, "clip_norm": 10.0}

    return ClippedAdam(rate)


def data_parallel_step(
    model, guide, loss, optimizer, first_arguments: tuple, parallel: DataParallel, plates
) -> Callable:
    """One SVI step of this rank under ``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs;
    the process group is already initialised): the global parameters' gradients are averaged over
    the ranks, the local ones are this rank's shard's (``data_parallel.DataParallelLoss``);
    the optimizer as in ``SVI.step``. Returns ``step(*arguments) -> loss``, the loss of the union
    of the ranks' shards."""
    loss.differentiable_loss(model, guide, *first_arguments)  # every parameter now exists
    module = DataParallelLoss(model, guide, loss, plates=plates, world_size=parallel.size)
    synchronised = DistributedDataParallel(module)

    def step(*arguments) -> float:
        with poutine.trace(param_only=True) as capture:
            value = synchronised(*arguments)
            value.backward()
        module.finish_backward()
        params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
        optimizer(params)
        zero_grads(params)
        total = value.detach().clone()
        distributed.all_reduce(total)
        return total.item() / parallel.size

    return step


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
    parallel: DataParallel = SINGLE,
    plates=(),
) -> None:
    """SVI for ``steps`` steps from ``seed``; ``arguments(step)`` gives the model's arguments (the
    same every step, or a minibatch); ``on_step(step, elbo, seconds)`` records the curve, the ELBO
    averaged over the steps since the last record; ``on_checkpoint(step, seconds, guide)`` is
    called at ``checkpoint_steps(steps)``, its own time not counted in ``seconds``. On several
    ranks (``parallel``), ``arguments`` are this rank's shard, split over the plates ``plates``
    (:func:`data_parallel_step`)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(parallel.seed(seed))
    if parallel.active:
        step_once = data_parallel_step(
            model, guide, loss, optimizer, arguments(0), parallel, plates
        )
    else:
        poutine.block(guide)(*arguments(0))  # build the guide's parameters before timing
        # the set-up draws from the prior, as often as each method's guide needs: start the
        # steps from one random state, so that methods of the same objective take the same steps
        pyro.set_rng_seed(parallel.seed(seed))
        step_once = SVI(model, guide, optimizer, loss).step
    clock = TrainingClock()
    every, window = record_every(steps), []
    for step in range(steps):
        window.append(-step_once(*arguments(step)))
        if (step + 1) % every == 0 or step == steps - 1:
            on_step(step + 1, sum(window) / len(window), clock.seconds())
            window.clear()
        if on_checkpoint is not None and step + 1 in checkpoints:
            with clock.paused():
                if not parallel.active:
                    gradients = partial(guide_gradients, model, guide, loss, arguments(step))
                    probe_gradients(step + 1, gradients)
                on_checkpoint(step + 1, clock.seconds(), guide)


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
    ``lr`` and ``temperature``; returns the guide. ``options``: ``init_loc_fn``, ``encoders``,
    ``create_plates``, ``discrete_sites`` (see ``guide_model_loss``), ``optimizer`` (else
    ``default_optimizer``), and ``parallel`` with ``plates`` (see ``train``). ``on_compile`` is
    accepted for the NumPyro examples' signature: Pyro runs eagerly, with nothing to compile."""
    optimizer = options.pop("optimizer", None) or default_optimizer(config["lr"])
    options.setdefault("init_loc_fn", None)
    options.setdefault("discrete_sites", ["z"])
    parallel, plates = options.pop("parallel", SINGLE), options.pop("plates", ())
    guide, fitted_model, loss = guide_model_loss(
        model,
        method,
        temperature=config["temperature"],
        max_plate_nesting=1,
        **options,
    )
    train(
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
        parallel,
        plates,
    )
    return guide


def fit_param_sites(
    model,
    method: str,
    *,
    names: tuple[str, ...],
    parameters: Callable,
    arguments: tuple,
    discrete_sites: list[str],
    on_checkpoint: Callable | None = None,
    **options,
):
    """:func:`fit_model` for a model whose parameters are ``pyro.param`` sites ``names``:
    returns ``parameters(**{name: array})`` read from Pyro's param store (NumPy, float64), and
    hands the same to ``on_checkpoint`` in place of the guide. ``options``: as for
    :func:`fit_model` (``config``, ``seed``, ``on_step``, ``checkpoints``, ``on_compile``)."""

    def fitted():
        store = {n: pyro.param(n).detach().cpu().double().numpy() for n in names}
        return parameters(**store)

    fit_model(
        model,
        method,
        arguments=lambda _: arguments,
        on_checkpoint=on_checkpoint
        and (lambda step, seconds, _: on_checkpoint(step, seconds, fitted())),
        discrete_sites=discrete_sites,
        **options,
    )
    return fitted()
