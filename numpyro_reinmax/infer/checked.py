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

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.svi import SVIRunResult, _make_loss_fn
from tqdm.auto import trange

from reinmax_core.messages import divergence_hint

__all__ = ["run_checked"]


def run_checked(svi, rng_key, num_steps: int, *args, progress_bar: bool = True, **kwargs):
    """Run ``svi`` for ``num_steps`` steps like ``svi.run(rng_key, num_steps, *args, **kwargs)``
    and return the same ``SVIRunResult``; raise ``FloatingPointError`` at the first step whose
    loss or updated parameters are not finite, naming the step, the parameters with a
    non-finite gradient and the sites with a non-finite value or log-density.

    Each step synchronises with the host (one check per step), so it is slower than
    ``svi.run``'s single compiled loop: a mode to turn on while a model is being developed."""
    state = svi.init(rng_key, *args, **kwargs)

    def update(state):  # the check runs inside jit: one host transfer per step
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


def _finite(array) -> bool:
    return bool(jnp.all(jnp.isfinite(array)))


def _diagnosis(svi, state, step: int, loss, args, kwargs) -> str:
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
    lines = [
        f"SVI step {step}: the loss is {float(loss)}"
        + (" and the updated parameters are not all finite." if np.isfinite(loss) else ".")
    ]
    try:
        with jax.disable_jit():
            (_, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(unconstrained)
        gradients = sorted(name for name, g in grads.items() if not _finite(g))
        lines.append(
            "Non-finite gradient in: "
            + (", ".join(gradients) if gradients else "no parameter")
            + " (recomputed from the parameters before this step, with its key)."
        )
        sites = _non_finite_sites(svi, svi.get_params(state), key, args, kwargs)
        lines.append(
            "Sites with a non-finite value or log-density at those parameters: "
            + (", ".join(sites) if sites else "none found in a fresh draw")
            + "."
        )
    except Exception as error:  # validation refuses the parameters: its message says where
        lines.append(f"Recomputing the step raised {type(error).__name__}: {error}")
    lines.append(divergence_hint("numpyro_reinmax"))
    return "\n".join(lines)


def _non_finite_sites(svi, params: dict, key, args, kwargs) -> list[str]:
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
            log_density = site["fn"].log_prob(site["value"])
            if not _finite(site["value"]):
                found.append(f"{program} site {name!r} (value)")
            elif bool(jnp.any(log_density == jnp.inf)):
                found.append(f"{program} site {name!r} (log-density +inf: {UNBOUNDED})")
            elif not _finite(log_density):
                found.append(f"{program} site {name!r} (log-density)")
    return found


UNBOUNDED = (
    "the density is unbounded at this value, as a Dirichlet, Beta or Gamma with a concentration "
    "below 1 is at the edge of its support; a point estimate (AutoDelta) runs there and never "
    "stops: use a guide with spread (AutoNormal) or concentrations of at least 1"
)
