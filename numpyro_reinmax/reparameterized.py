"""The small base that every distribution of this package shares (NumPyro).

A subclass declares its parameters' event shape and how to view itself as a one-hot categorical
(``_one_hot_logits``, ``_from_one_hot``). The base gives the probs/logits pair (one given, the
other derived exactly, with ``-inf`` for zero probabilities), validation with clear errors,
``expand`` that keeps the class and temperature, pytree registration, and, for subclasses that name
an estimator rule, a reparameterized ``sample`` whose backward is that rule. NumPyro calls
``sample(key, sample_shape)`` at every site, never ``rsample``, so the custom VJP lives there.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import Distribution
from numpyro.distributions.util import lazy_property

from .estimators import estimate, rule_options
from .sampling import draw_one_hot
from .validation import check_temperature, validation_enabled


class ProbsOrLogits(Distribution):
    """A distribution given by ``probs`` or ``logits`` (exactly one), with an optional temperature.

    Subclasses set ``event_rank`` (1 for a one-hot vector, 0 for a Bernoulli) and implement
    ``_check``, ``_logits_from_probs`` and ``_probs_from_logits``.
    """

    event_rank: ClassVar[int]
    rule_name: ClassVar[str | None] = None  # the estimator of a reparameterized one-hot draw
    uses_temperature: ClassVar[bool] = False
    # A temperature given as a number is static (pytree aux data), so that ``jax.vmap`` over a
    # distribution maps its parameters only; one given as an array (a traced schedule) is data.
    pytree_data_fields = ("probs", "logits", "_array_temperature")
    pytree_aux_fields = ("_from_logits", "_number_temperature", "options")
    _array_temperature = None
    _number_temperature = None
    options = ()

    def __init__(
        self,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        temperature: float = 1.0,
        validate_args: bool | None = None,
        **options: float,
    ) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("Pass exactly one of `probs` or `logits`.")
        validate = validation_enabled(validate_args)
        self._from_logits = logits is not None
        parameter = jnp.asarray(logits if self._from_logits else probs)
        if validate:
            self._check(parameter)
        if self._from_logits:
            self.logits = parameter
        else:
            self.probs = parameter
        if self.rule_name is not None:
            self.options = rule_options(self.rule_name, options)
        elif options:
            raise TypeError(f"{type(self).__name__} takes no option {next(iter(options))!r}.")
        if self.uses_temperature:
            temperature = check_temperature(temperature)
            if isinstance(temperature, float):
                self._number_temperature = temperature
            else:
                self._array_temperature = temperature
        rank = self.event_rank
        shape = jnp.shape(parameter)
        batch_shape, event_shape = shape[: len(shape) - rank], shape[len(shape) - rank :]
        super().__init__(batch_shape, event_shape, validate_args=False)
        self._validate_args = validate

    @property
    def temperature(self) -> float | Array:
        """The backward's temperature: a float, an array (under tracing), or ``None``."""
        if self._array_temperature is not None:
            return self._array_temperature
        return self._number_temperature

    def _check(self, parameter) -> None:
        raise NotImplementedError

    def _logits_from_probs(self, probs: Array) -> Array:
        raise NotImplementedError

    def _probs_from_logits(self, logits: Array) -> Array:
        raise NotImplementedError

    @lazy_property
    def logits(self) -> Array:
        return self._logits_from_probs(self.probs)

    @lazy_property
    def probs(self) -> Array:
        return self._probs_from_logits(self.logits)

    @property
    def has_rsample(self) -> bool:
        return self.rule_name is not None

    @property
    def mean(self) -> Array:
        """The probabilities: the mean of a one-hot or 0/1 variable."""
        return self.probs

    @property
    def variance(self) -> Array:
        return self.probs * (1 - self.probs)

    def _one_hot_logits(self) -> Array:
        """Log-probabilities, up to a shift per row, of the equivalent one-hot categorical."""
        raise NotImplementedError

    def _from_one_hot(self, sample: Array) -> Array:
        """This distribution's value for a one-hot draw of the equivalent categorical."""
        raise NotImplementedError

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        """An exact draw; reparameterized (the class's estimator rule) when the class names one."""
        logits = self._one_hot_logits()
        logits = jnp.broadcast_to(logits, tuple(sample_shape) + jnp.shape(logits))
        if self.rule_name is None:
            probs = jax.lax.stop_gradient(jax.nn.softmax(logits, -1))
            return self._from_one_hot(draw_one_hot(key, probs))
        sample, _ = estimate(self.rule_name, key, logits, self.temperature, self.options)
        return self._from_one_hot(sample)

    def expand(self, batch_shape):
        batch_shape = tuple(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        name = "logits" if self._from_logits else "probs"
        parameter = jnp.broadcast_to(getattr(self, name), batch_shape + self.event_shape)
        extra = {"temperature": self.temperature} if self.uses_temperature else {}
        new = type(self)(**{name: parameter}, **extra, **dict(self.options), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, probs=None, logits=None, temperature=()):
        shape = tuple(probs if logits is None else logits)
        split = len(shape) - cls.event_rank
        return shape[:split], shape[split:]

    def __repr__(self) -> str:
        temperature = f", temperature={self.temperature}" if self.uses_temperature else ""
        options = "".join(f", {name}={value}" for name, value in self.options)
        return (
            f"{type(self).__name__}(batch_shape={self.batch_shape}, "
            f"event_shape={self.event_shape}{temperature}{options})"
        )
