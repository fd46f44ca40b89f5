"""Errors raised while a model or guide runs name the sample site where they happened.

A distribution checks its parameters when it is built, before the PPL's ``sample`` learns the
site's name, so an invalid parameter reached during training (NaN after a divergence) would name
no site. Each backend's ``infer.site_context.NameFailingSite`` is a messenger of its PPL that
calls :meth:`SiteTracker.entered` and :meth:`SiteTracker.completed_site` at each sample site, and
:meth:`SiteTracker.name_error` on an exception that escapes the program: the error then names the
site being sampled, or the last site completed (the failing distribution is the next site's).
"""

from __future__ import annotations

__all__ = ["SiteTracker", "name_site"]


def name_site(error: BaseException, where: str) -> None:
    """Append ``where`` to the error's message (kept when a handler re-raises the error with its
    message, as Pyro's trace does), or add it as a note."""
    if error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]}\n{where}", *error.args[1:])
    elif hasattr(error, "add_note"):
        error.add_note(where)


class SiteTracker:
    """Which sample site of ``program`` (``"model"`` or ``"guide"``) is running or last ran."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.current: str | None = None
        self.completed: str | None = None

    def entered(self, name: str) -> None:
        self.current = name

    def completed_site(self, name: str) -> None:
        self.completed, self.current = name, None

    def name_error(self, error: BaseException | None) -> None:
        """Add :meth:`where` to an error leaving the program, once (nested trackers skip it)."""
        if error is not None and not getattr(error, "_reinmax_site_named", False):
            name_site(error, self.where())
            error._reinmax_site_named = True

    def where(self) -> str:
        """Where in the program the exception left from, in words."""
        if self.current is not None:
            return f"(raised in the {self.program} at sample site {self.current!r})"
        if self.completed is not None:
            return (
                f"(raised in the {self.program} after sample site {self.completed!r}: while "
                "building or sampling the distribution of the site that follows it)"
            )
        return f"(raised in the {self.program} before its first sample site)"
