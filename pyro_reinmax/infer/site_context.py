"""Errors raised while a model or guide runs name the sample site where they happened (Pyro):
:class:`NameFailingSite` feeds ``reinmax_core.site_context.SiteTracker`` from Pyro's messages."""

from __future__ import annotations

from types import TracebackType

from pyro.poutine.messenger import Messenger

from reinmax_core.site_context import SiteTracker, name_site

__all__ = ["NameFailingSite", "name_site"]


class NameFailingSite(Messenger):
    """Add to an exception leaving ``program`` (``"model"`` or ``"guide"``) which sample site it
    left from."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.sites = SiteTracker(program)

    def _pyro_sample(self, msg: dict) -> None:
        self.sites.entered(msg["name"])

    def _pyro_post_sample(self, msg: dict) -> None:
        self.sites.completed_site(msg["name"])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self.sites.name_error(exc_value)
        return super().__exit__(exc_type, exc_value, traceback)
