"""Signals during a run: termination handled like Ctrl-C, and per-cell deadlines.

``timeout``, Slurm and ``docker stop`` end a job with SIGTERM, and a job started in the
background by a non-interactive shell ignores SIGINT. :func:`terminate_as_interrupt`
turns both into :class:`KeyboardInterrupt` for the length of a run, so the runner's one
interruption path (manifest ``interrupted``, finished cells published) serves all of
them. :func:`deadline` bounds one cell's wall time with ``SIGALRM``: a hanging explainer
fails its own cell instead of the run. It interrupts Python code; a single native call
that never returns to the interpreter is only stopped when it does.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class CellTimeout(Exception):
    """A cell ran past its deadline (``--cell-timeout``)."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Raise :class:`CellTimeout` in the block after ``seconds`` (None or 0: no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise CellTimeout(f"{what} ran past the {seconds:g} s cell timeout")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
