r"""``run_checked``: SVI steps that stop at the first non-finite one and say where it went wrong
(Pyro).

A NaN in Pyro raises nothing by itself: ``svi.step`` returns a NaN loss and the optimizer writes
NaN into the parameters, which every later step keeps. This runs the steps of ``svi`` (its
model, guide, loss and optimizer, as ``SVI.step`` does) and checks each step's loss and gradients
before the optimizer uses them, and the parameters after. At the first step where one is not
finite it leaves the parameters as they were before that step and raises a
``FloatingPointError`` that names the step, the parameters whose gradient is non-finite, and the
model and guide sites whose value or log-density is non-finite at those parameters (the same
message as ``numpyro_reinmax.infer.run_checked``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.infer.util import torch_item, zero_grads
from tqdm.auto import trange

from reinmax_core.messages import non_finite_site, non_finite_step
from reinmax_core.options import check_count

__all__ = ["run_checked"]


def run_checked(
    svi: SVI, num_steps: int, *args: Any, progress_bar: bool = True, **kwargs: Any
) -> list:
    """Take ``num_steps`` steps of ``svi`` (``svi.step(*args, **kwargs)`` each) and return their
    losses; raise ``FloatingPointError`` at the first step whose loss, gradients or updated
    parameters are not finite, naming the step, the parameters with a non-finite gradient and
    the sites with a non-finite value or log-density, with the parameters left as they were
    before that step. Each step checks every gradient: a mode to turn on while a model is being
    developed."""
    num_steps = check_count("num_steps", num_steps)
    losses = []
    for step in trange(num_steps, disable=not progress_bar, desc="SVI (checked)"):
        with poutine.trace(param_only=True) as capture:
            loss = torch_item(svi.loss_and_grads(svi.model, svi.guide, *args, **kwargs))
        named = {name: site["value"].unconstrained() for name, site in capture.trace.nodes.items()}
        gradients = sorted(
            name
            for name, p in named.items()
            if p.grad is not None and not bool(torch.isfinite(p.grad).all())
        )
        params = set(named.values())
        if not math.isfinite(loss) or gradients:
            zero_grads(params)
            if not gradients:  # a non-finite loss may have skipped the backward pass
                gradients = _recomputed_gradients(svi, named, args, kwargs)
            raise FloatingPointError(_diagnosis(svi, step, loss, gradients, args, kwargs))
        before = {name: p.detach().clone() for name, p in named.items()}
        svi.optim(params)
        zero_grads(params)
        if not all(bool(torch.isfinite(p).all()) for p in params):
            with torch.no_grad():
                for name, p in named.items():
                    p.copy_(before[name])
            raise FloatingPointError(_diagnosis(svi, step, loss, gradients, args, kwargs))
        losses.append(loss)
    return losses


def _recomputed_gradients(svi: SVI, named: dict, args: tuple, kwargs: dict) -> list[str]:
    """The parameters whose gradient of the loss is non-finite, by ``differentiable_loss``
    where the loss has it (Pyro's ELBOs skip the backward pass of a NaN loss)."""
    if not hasattr(svi.loss, "differentiable_loss"):
        return []
    loss = svi.loss.differentiable_loss(svi.model, svi.guide, *args, **kwargs)
    names = [name for name, p in named.items() if p.requires_grad]
    if not names or not getattr(loss, "requires_grad", False):
        return []
    grads = torch.autograd.grad(loss, [named[n] for n in names], allow_unused=True)
    return sorted(
        name
        for name, g in zip(names, grads, strict=True)
        if g is not None and not bool(torch.isfinite(g).all())
    )


def _diagnosis(
    svi: SVI, step: int, loss: float, gradients: list[str], args: tuple, kwargs: dict
) -> str:
    """The error for ``step``, with the sites found non-finite in a fresh draw at the parameters
    before it."""
    sites = failure = None
    try:
        sites = _non_finite_sites(svi, args, kwargs)
    except Exception as error:  # validation refuses the parameters: its message says where
        failure = f"{type(error).__name__}: {error}"
    return non_finite_step(step, loss, gradients, sites, failure, "pyro_reinmax")


def _non_finite_sites(svi: SVI, args: tuple, kwargs: dict) -> list[str]:
    with torch.no_grad():
        guide_trace = poutine.trace(svi.guide).get_trace(*args, **kwargs)
        model = poutine.replay(svi.model, trace=guide_trace)
        model_trace = poutine.trace(model).get_trace(*args, **kwargs)
    found = []
    for program, program_trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in program_trace.nodes.items():
            if site["type"] != "sample":
                continue
            value = site["value"]
            log_density = site["fn"].log_prob(value)
            value_finite = bool(torch.isfinite(value).all()) if value.is_floating_point() else True
            if not (value_finite and bool(torch.isfinite(log_density).all())):
                largest = float(log_density.detach().max())
                nan = bool(log_density.isnan().any())
                found.append(non_finite_site(program, name, value_finite, largest, nan))
    return found
