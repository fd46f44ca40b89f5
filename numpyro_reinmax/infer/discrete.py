"""``infer_discrete`` for models with one-hot sites (NumPyro).

NumPyro's :func:`numpyro.contrib.funsor.infer_discrete` substitutes integer indices for the
enumerated sites, which a one-hot site cannot take. Here the model runs under
:func:`~numpyro_reinmax.enum_onehot` (one-hot sites shown to enumeration as their index, the
model's code receiving one-hot values), and the posterior draw is then substituted into the
unchanged model, so the trace and the model's return value hold one-hot values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from numpyro.handlers import block, substitute, trace
from numpyro.primitives import Messenger

from reinmax_core.options import check_infer_discrete

from ..enumeration import _is_one_hot, enum_onehot

__all__ = ["infer_discrete"]


class _RefuseScan(Messenger):
    """NumPyro's infer_discrete fails inside ``scan`` (NumPyro 0.22: "Could not extract point
    from -inf"): say so, and what works."""

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "control_flow":
            raise NotImplementedError(
                "infer_discrete does not support numpyro.contrib.control_flow.scan (NumPyro's own "
                "fails there): write the loop as a Python loop with numpyro.contrib.funsor.markov, "
                "or read the guide's logits (AutoReinMax.median) for the scan's sites."
            )


def infer_discrete(
    fn: Callable | None = None,
    first_available_dim: int | None = None,
    temperature: int = 1,
    rng_key: Array | None = None,
) -> Callable:
    """:func:`numpyro.contrib.funsor.infer_discrete` that also handles one-hot sites: samples
    (``temperature=1``) or maximises (``temperature=0``) the sites marked for parallel enumeration
    from their posterior given the observations, latent one-hot sites included (marked
    automatically, as by :func:`~numpyro_reinmax.enum_onehot`), whose values stay one-hot.
    Arguments as NumPyro's.

    Example:
        The most probable assignment of each point of a two-component mixture:

        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro_reinmax import OneHotCategorical
        >>> def model(x):
        ...     with numpyro.plate("data", len(x)):
        ...         z = numpyro.sample("z", OneHotCategorical(logits=jnp.zeros(2)))
        ...         numpyro.sample("x", dist.Normal(z @ jnp.array([-3.0, 3.0]), 1.0), obs=x)
        >>> sampler = infer_discrete(
        ...     model, first_available_dim=-2, temperature=0, rng_key=jax.random.PRNGKey(0)
        ... )
        >>> trace = numpyro.handlers.trace(sampler).get_trace(jnp.array([-2.9, 3.1, -0.2]))
        >>> trace["z"]["value"].tolist()
        [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    """
    if fn is None:  # as a decorator
        return lambda fn: infer_discrete(fn, first_available_dim, temperature, rng_key)
    check_infer_discrete(first_available_dim, temperature, dim_may_be_guessed=True)
    if rng_key is None and (temperature == 1 or first_available_dim is None):
        raise ValueError(
            "infer_discrete needs rng_key (e.g. jax.random.PRNGKey(0)) to draw from the "
            "posterior (temperature=1) or to guess first_available_dim."
        )
    from numpyro.contrib.funsor import infer_discrete as numpyro_infer_discrete

    shown_as_index = numpyro_infer_discrete(
        enum_onehot(_RefuseScan(fn)),
        first_available_dim=first_available_dim,
        temperature=temperature,
        rng_key=rng_key,
    )

    def posterior_draw(*args: Any, **kwargs: Any) -> object:
        with block():
            draw = trace(shown_as_index).get_trace(*args, **kwargs)
        values = {}
        for name, site in draw.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            value = site["value"]
            if _is_one_hot(site["fn"]) and jnp.issubdtype(jnp.result_type(value), jnp.integer):
                value = jax.nn.one_hot(value, site["fn"].event_shape[-1])
            values[name] = value
        with substitute(data=values):
            return fn(*args, **kwargs)

    return posterior_draw
