"""The capture-recapture example in both backends, against the likelihood computed by hand: one
animal caught at occasion 0 and missed at occasion 1. NumPyro's port masks occasion 0 (before the
first capture is recorded) as written; Pyro's ``model_1``, as Pyro's example writes it, updates
its mask tensor in place (``|=``) after the sites are recorded, and Pyro scores them after the
run, so occasion 0 is scored with the final mask: its recapture factor enters too."""

import math

import jax
import jax.numpy as jnp
import numpyro
import pyro
import pytest
import torch
from numpyro.infer import TraceEnum_ELBO as NumPyroTraceEnum_ELBO
from pyro.infer import TraceEnum_ELBO

from reinmax_examples import cjs_numpyro, cjs_pyro

PHI, RHO = 0.78, 0.6
MISSED = PHI * (1 - RHO) + (1 - PHI)  # alive at 0: survives and is missed, or dies


def test_numpyro_port_masks_the_occasions_before_the_first_capture():
    model = numpyro.handlers.condition(cjs_numpyro.model_1, data={"phi": PHI, "rho": RHO})
    loss = NumPyroTraceEnum_ELBO(max_plate_nesting=1).loss(
        jax.random.PRNGKey(0), {}, model, lambda h: None, jnp.array([[1.0, 0.0]])
    )
    assert float(loss) == pytest.approx(-math.log(MISSED), abs=1e-5)


def test_pyros_model_as_written_scores_occasion_zero_with_the_final_mask():
    data = {"phi": torch.tensor(PHI), "rho": torch.tensor(RHO)}
    model = pyro.poutine.condition(cjs_pyro.model_1, data=data)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda h: None, torch.tensor([[1.0, 0]]))
    assert loss == pytest.approx(-math.log(RHO * MISSED), abs=1e-5)
