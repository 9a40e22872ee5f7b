"""One exception type for every failure a user can fix.

The CLI prints these without a traceback; every message names the file, plugin or
option at fault and says what to do about it.
"""

from __future__ import annotations


class BenchError(Exception):
    """An error the user can act on: ``str(err)`` says what went wrong and the fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\n  fix: {fix}")
