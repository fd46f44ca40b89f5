"""Handlers that also reach the sites inside NumPyro's ``scan``.

NumPyro's ``scan`` runs its body under a ``block`` (when enumerating, all but the first steps,
which it unrolls and renames ``_PREV_<name>``), and re-applies the recorded sites to the outer
handlers only after the loop, with their values already drawn (``_control_flow_done``). A handler
that must act *before* a site is drawn (mark it for enumeration, show a one-hot site as its index)
therefore never sees the sites of the scanned steps. :class:`ScanAwareMessenger` wraps the body
of every ``scan`` it meets with a handler that calls back into it, so its ``process_sample`` and
``postprocess_sample`` see every step's sites under their own (unprefixed) names, once.
"""

from __future__ import annotations

import copy
import re

from numpyro.distributions.batch_util import promote_batch_shape
from numpyro.primitives import Messenger

_PREV = "_PREV_"


def base_name(name: str) -> str:
    """The site name without NumPyro's ``_PREV_`` prefixes (``_PREV__PREV_z`` -> ``z``)."""
    return re.sub(f"^({_PREV})+", "", name)


def steps_back(name: str) -> int:
    """How many ``_PREV_`` prefixes a name carries: the steps it lies behind its site's own."""
    return (len(name) - len(base_name(name))) // len(_PREV)


class _ScanBody(Messenger):
    """The body of one ``scan``, seen by the handler that wrapped it."""

    def __init__(self, fn, owner: ScanAwareMessenger) -> None:
        super().__init__(fn)
        self.owner = owner

    def process_message(self, msg) -> None:
        if msg["type"] == "sample":
            msg["infer"][self.owner.seen_key] = True
            self.owner.process_sample(msg)

    def postprocess_message(self, msg) -> None:
        if msg["type"] == "sample":
            self.owner.postprocess_sample(msg)


class ScanAwareMessenger(Messenger):
    """A handler of sample sites that also handles the sites inside ``scan`` bodies.

    Subclasses implement :meth:`process_sample` and :meth:`postprocess_sample` (and may inspect a
    ``scan`` in :meth:`enter_scan`). Sites outside any ``scan`` reach them as usual; sites inside a
    ``scan`` reach them from within the body, before NumPyro renames or blocks them, and not a
    second time when ``scan`` replays them to the outer handlers.
    """

    def __init__(self, fn=None) -> None:
        super().__init__(fn)
        self.seen_key = f"_numpyro_reinmax_seen_{id(self)}"

    def process_message(self, msg) -> None:
        if msg["type"] == "control_flow":
            self.enter_scan(msg)
            body, *rest = msg["args"]
            msg["args"] = (_ScanBody(body, self), *rest)
        elif msg["type"] == "sample" and not self._seen(msg):
            self.process_sample(msg)

    def postprocess_message(self, msg) -> None:
        if msg["type"] == "sample" and not self._seen(msg):
            self.postprocess_sample(msg)

    def _seen(self, msg) -> bool:
        return msg.get("_control_flow_done", False) or msg["infer"].get(self.seen_key, False)

    def enter_scan(self, msg) -> None:
        """Called with ``scan``'s message (``args``: body, init, xs, length, reverse; ``kwargs``:
        ``history``, ...) before its body is wrapped."""

    def process_sample(self, msg) -> None:
        """Called for every sample site before it is drawn."""

    def postprocess_sample(self, msg) -> None:
        """Called for every sample site after it is drawn."""


def register_batch_promotion(cls) -> type:
    """Teach ``scan`` (``promote_batch_shape``) the batch shape of a wrapper distribution whose
    single field ``base`` carries the parameters: the wrapper's batch shape is its base's."""

    @promote_batch_shape.register(cls)
    def _promote(d):
        promoted = copy.copy(d)
        promoted.base = promote_batch_shape(d.base)
        promoted._batch_shape = promoted.base.batch_shape
        return promoted

    return cls
