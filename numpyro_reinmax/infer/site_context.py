"""Errors raised while a model or guide runs name the sample site where they happened (NumPyro):
:class:`NameFailingSite` feeds ``reinmax_core.site_context.SiteTracker`` from NumPyro's messages."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from numpyro.primitives import Messenger

from reinmax_core.site_context import SiteTracker

__all__ = ["NameFailingSite"]


class NameFailingSite(Messenger):
    """Add to an exception leaving ``program`` (``"model"`` or ``"guide"``) which sample site it
    left from."""

    def __init__(self, fn: Callable, program: str) -> None:
        super().__init__(fn)
        self.sites = SiteTracker(program)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample":
            self.sites.entered(msg["name"])

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "sample":
            self.sites.completed_site(msg["name"])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self.sites.name_error(exc_value)
        return super().__exit__(exc_type, exc_value, traceback)
