"""Errors raised while a model or guide runs name the sample site where they happened (NumPyro).

A distribution checks its parameters when it is built, before ``numpyro.sample`` learns the site's
name, so an invalid parameter reached during training (NaN after a divergence) would name no
site. :class:`NameFailingSite` follows the sample sites of a program and adds to an exception
that escapes it: the site being sampled, or the last site completed (the failing
distribution is then the next site's).
"""

from __future__ import annotations

from numpyro.primitives import Messenger

__all__ = ["NameFailingSite", "name_site"]


def name_site(error: BaseException, where: str) -> None:
    """Append ``where`` to the error's message (kept when a handler re-raises the error with its
    message, as Pyro's trace does), or add it as a note."""
    if error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]}\n{where}", *error.args[1:])
    elif hasattr(error, "add_note"):
        error.add_note(where)


class NameFailingSite(Messenger):
    """Add to an exception leaving ``program`` (``"model"`` or ``"guide"``) which sample site it
    left from."""

    def __init__(self, fn, program: str) -> None:
        super().__init__(fn)
        self.program = program
        self.current: str | None = None
        self.completed: str | None = None

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample":
            self.current = msg["name"]

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "sample":
            self.completed, self.current = msg["name"], None

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_value is not None and not getattr(exc_value, "_numpyro_reinmax_site_named", False):
            name_site(exc_value, self.where())
            exc_value._numpyro_reinmax_site_named = True
        return super().__exit__(exc_type, exc_value, traceback)

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
