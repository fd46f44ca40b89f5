"""``infer_discrete`` for models with one-hot sites (Pyro).

Pyro's :func:`pyro.infer.infer_discrete` packs each enumerated value as a tensor without event
dimensions, so a one-hot site (event shape ``(K,)``) fails with "Invalid tensor shape". Here each
enumerated one-hot site is shown to it as the index of its one (a view with
``log_prob(k) = log_prob(onehot(k))``) while the model's code still receives one-hot values; the
posterior draw is then replayed through the unchanged model, so the trace and the model's return
value hold one-hot values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import TorchDistribution
from pyro.infer import infer_discrete as pyro_infer_discrete
from pyro.poutine.messenger import Messenger
from torch.distributions import Distribution, constraints

from reinmax_core.options import check_infer_discrete

from ..families import support_kind

__all__ = ["infer_discrete"]

_CATEGORIES = "_pyro_reinmax_one_hot_categories"


class OneHotAsIndex(TorchDistribution):
    """A one-hot distribution seen through the position of its one: values ``0..K-1``."""

    arg_constraints: dict = {}
    has_enumerate_support = True

    def __init__(self, base: Distribution) -> None:
        self.base = base
        super().__init__(base.batch_shape, torch.Size(), validate_args=False)

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.base.event_shape[-1] - 1)

    def _one_hot(self, index: torch.Tensor) -> torch.Tensor:
        return F.one_hot(index.long(), self.base.event_shape[-1]).to(self.base.mean.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(self._one_hot(value))

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.base.sample(sample_shape).argmax(-1)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        k = self.base.event_shape[-1]
        values = torch.arange(k, device=self.base.mean.device)
        values = values.reshape((k,) + (1,) * len(self.batch_shape))
        return values.expand((k,) + self.batch_shape) if expand else values


class _ShowOneHotAsIndex(Messenger):
    """Show every latent one-hot site marked for parallel enumeration as its index; the model's
    code receives the one-hot value."""

    def _pyro_sample(self, msg: dict) -> None:
        fn = msg["fn"]
        if msg["is_observed"] or support_kind(getattr(fn, "support", None)) != "one_hot":
            return
        # config_enumerate leaves a site it cannot enumerate unmarked: without this error, such
        # a site would keep a prior draw, also at temperature=0
        marked = msg["infer"].get("enumerate") == "parallel"
        if fn.event_dim != 1 and (marked or "enumerate" not in msg["infer"]):
            raise ValueError(
                f"site {msg['name']!r}: only one-hot sites with event_dim 1 can be enumerated "
                f"(got event_shape {tuple(fn.event_shape)}), so infer_discrete cannot draw it "
                "from its posterior; put the other event dims in a plate (or mark the site "
                "infer={'enumerate': None} to keep its draw)."
            )
        if not marked:
            return
        msg["fn"] = OneHotAsIndex(fn)
        msg["infer"][_CATEGORIES] = fn.event_shape[-1]

    def _pyro_post_sample(self, msg: dict) -> None:
        if _CATEGORIES in msg["infer"] and not msg["value"].is_floating_point():
            msg["value"] = msg["fn"]._one_hot(msg["value"])


def infer_discrete(
    fn: Callable | None = None,
    first_available_dim: int | None = None,
    temperature: int = 1,
    *,
    strict_enumeration_warning: bool = True,
) -> Callable:
    """:func:`pyro.infer.infer_discrete` that also handles one-hot sites: samples
    (``temperature=1``) or maximises (``temperature=0``) the sites marked for parallel
    enumeration from their posterior given the observations, one-hot sites included, whose values
    stay one-hot. Arguments as Pyro's.

    Example:
        The most probable assignment of each point of a two-component mixture:

        >>> import pyro, torch, pyro.distributions as dist
        >>> from pyro_reinmax import OneHotCategorical
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", OneHotCategorical(logits=torch.zeros(2)))
        ...         pyro.sample("x", dist.Normal(z @ torch.tensor([-3.0, 3.0]), 1.0), obs=x)
        >>> model = pyro.infer.config_enumerate(model)
        >>> sampler = infer_discrete(model, first_available_dim=-2, temperature=0)
        >>> trace = pyro.poutine.trace(sampler).get_trace(torch.tensor([-2.9, 3.1, -0.2]))
        >>> trace.nodes["z"]["value"]
        tensor([[1., 0.],
                [0., 1.],
                [1., 0.]])
    """
    if fn is None:  # as a decorator
        return lambda fn: infer_discrete(
            fn,
            first_available_dim,
            temperature,
            strict_enumeration_warning=strict_enumeration_warning,
        )
    check_infer_discrete(first_available_dim, temperature, dim_may_be_guessed=False)
    shown_as_index = pyro_infer_discrete(
        _ShowOneHotAsIndex()(fn),
        first_available_dim=first_available_dim,
        temperature=temperature,
        strict_enumeration_warning=strict_enumeration_warning,
    )

    def posterior_draw(*args: Any, **kwargs: Any) -> Any:
        with poutine.block():
            draw = poutine.trace(shown_as_index).get_trace(*args, **kwargs)
        for site in draw.nodes.values():
            if site["type"] == "sample" and _CATEGORIES in site["infer"]:
                site["value"] = site["fn"]._one_hot(site["value"])
        return poutine.replay(fn, trace=draw)(*args, **kwargs)

    return posterior_draw
