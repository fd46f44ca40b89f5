"""The API pages' entries for the estimator classes, which each backend derives from the rule table.

A line ``.. estimator-classes:: one_hot`` (or ``bernoulli``, ``categorical``) in
``docs/api/<package>.rst`` stands for an ``autoclass`` entry per rule of that kind, in the rule
table's order: ``docs/conf.py`` expands it as Sphinx reads the page, and ``tests/test_docs.py``
expands it to check that every public name has an entry. A rule added to the table needs no edit
of the pages.
"""

import re

from reinmax_core.estimator_classes import class_name
from reinmax_core.rules import RULES

MARKER = re.compile(r"^\.\. estimator-classes:: (\w+)$", re.M)


def expand(page: str, package: str) -> str:
    """``page`` with each marker line replaced by the entries of its kind."""

    def entries(match: re.Match) -> str:
        kind = match.group(1)
        return "\n\n".join(
            f".. autoclass:: {package}.{class_name(rule, kind)}\n   :members:" for rule in RULES
        )

    return MARKER.sub(entries, page)
