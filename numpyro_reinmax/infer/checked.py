r"""``run_checked``: ``SVI.run`` that stops at the first non-finite step and says where it went
wrong (NumPyro).

Under ``jit`` a NaN raises nothing: ``svi.run`` returns NaN losses and parameters. This runs the
same jitted ``svi.update`` step by step and checks, after each, that the loss and every parameter
are finite. At the first step where one is not, it recomputes that step's loss and gradient
outside ``jit`` with the same key from the parameters before it, and raises a
``FloatingPointError`` that names the step, the parameters whose gradient is non-finite, and the
model and guide sites whose value or log-density is non-finite at those parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from numpyro import handlers
from numpyro.infer.svi import SVI, SVIRunResult, SVIState, _make_loss_fn
from tqdm.auto import trange

from reinmax_core.messages import non_finite_site, non_finite_step
from reinmax_core.options import check_count

from .site_log_prob import site_log_prob

__all__ = ["run_checked"]


def run_checked(
    svi: SVI, rng_key: Array, num_steps: int, *args: Any, progress_bar: bool = True, **kwargs: Any
) -> SVIRunResult:
    """Run ``svi`` for ``num_steps`` steps like ``svi.run(rng_key, num_steps, *args, **kwargs)``
    and return the same ``SVIRunResult``; raise ``FloatingPointError`` at the first step whose
    loss or updated parameters are not finite, naming the step, the parameters with a
    non-finite gradient and the sites with a non-finite value or log-density.

    Each step synchronises with the host (one check per step), so it is slower than
    ``svi.run``'s single compiled loop: a mode to turn on while a model is being developed."""
    num_steps = check_count("num_steps", num_steps)
    state = svi.init(rng_key, *args, **kwargs)

    def update(
        state: SVIState,
    ) -> tuple[SVIState, Array, Array]:  # the check runs inside jit: one host transfer per step
        new_state, loss = svi.update(state, *args, **kwargs)
        leaves = [loss, *jax.tree.leaves(svi.optim.get_params(new_state.optim_state))]
        return new_state, loss, jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))

    update = jax.jit(update)
    losses = []
    for step in trange(num_steps, disable=not progress_bar, desc="SVI (checked)"):
        new_state, loss, finite = update(state)
        if not finite:
            raise FloatingPointError(_diagnosis(svi, state, step, loss, args, kwargs))
        state = new_state
        losses.append(loss)
    return SVIRunResult(svi.get_params(state), state, jnp.stack(losses) if losses else None)


def _finite(array: ArrayLike) -> bool:
    return bool(jnp.all(jnp.isfinite(array)))


def _diagnosis(svi: SVI, state: SVIState, step: int, loss: Array, args: tuple, kwargs: dict) -> str:
    """What went non-finite at ``step``, recomputed outside ``jit`` from the state before it."""
    _, key = jax.random.split(state.rng_key)
    loss_fn = _make_loss_fn(
        svi.loss,
        key,
        svi.constrain_fn,
        svi.model,
        svi.guide,
        args,
        kwargs,
        svi.static_kwargs,
        mutable_state=state.mutable_state,
    )
    unconstrained = svi.optim.get_params(state.optim_state)
    gradients = sites = failure = None
    try:
        with jax.disable_jit():
            (_, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(unconstrained)
        gradients = sorted(name for name, g in grads.items() if not _finite(g))
        sites = _non_finite_sites(svi, svi.get_params(state), key, args, kwargs)
    except Exception as error:  # validation refuses the parameters: its message says where
        failure = f"{type(error).__name__}: {error}"
    return non_finite_step(step, float(loss), gradients, sites, failure, "numpyro_reinmax")


def _non_finite_sites(svi: SVI, params: dict, key: Array, args: tuple, kwargs: dict) -> list[str]:
    guide_key, model_key = jax.random.split(key)
    guide = handlers.substitute(handlers.seed(svi.guide, guide_key), data=params)
    with jax.disable_jit():
        guide_trace = handlers.trace(guide).get_trace(*args, **kwargs, **svi.static_kwargs)
        model = handlers.replay(
            handlers.substitute(handlers.seed(svi.model, model_key), data=params), guide_trace
        )
        model_trace = handlers.trace(model).get_trace(*args, **kwargs, **svi.static_kwargs)
    found = []
    for program, program_trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in program_trace.items():
            if site["type"] != "sample":
                continue
            log_density = site_log_prob(site)
            if not (_finite(site["value"]) and _finite(log_density)):
                largest = float(jnp.max(log_density))
                nan = bool(jnp.any(jnp.isnan(log_density)))
                found.append(non_finite_site(program, name, _finite(site["value"]), largest, nan))
    return found
