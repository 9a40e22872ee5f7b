"""One exception type for every failure a user can fix.

The CLI prints these without a traceback; every message names the file, plugin or
option at fault and says what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class BenchError(Exception):
    """An error the user can act on: ``str(err)`` says what went wrong and the fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'l2i'?)`` for the closest candidate, or nothing."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
