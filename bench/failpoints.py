"""Named points where the fault suite stops the process, as a kill would.

A reliability claim ("a kill at any stage resumes to the same leaderboard") is only
tested if the kill lands inside the stage it names, every time. Sleeping and sending a
signal from outside races the work; instead, the code calls :func:`failpoint` at each
stage boundary, and when ``L2I_BENCH_FAILPOINT=STAGE[=SIGNAL]`` names that stage the
process sends itself the signal (``KILL`` by default, or ``TERM``/``INT``). The idea is
the failpoints of FoundationDB, etcd's gofail and TiKV's fail-rs. Unset (always, outside
the tests), a failpoint is one dictionary lookup.

Stages: ``decode`` (audio decoding, after the first clip), ``classifier`` (training,
after the first epoch), ``cell`` (a cell computed, not yet written), ``publish`` (the
published files staged, one of them renamed into place), ``task`` (a cell computed in a
Ray worker, not yet returned to the driver).

A failpoint fires once per process. A Ray worker that dies is replaced by a fresh
process that would fire again on the retry; ``L2I_BENCH_FAILPOINT_ONCE=PATH`` makes it
fire once in all: only the process that creates ``PATH`` fires.
"""

from __future__ import annotations

import os
import signal

ENV = "L2I_BENCH_FAILPOINT"
ONCE_ENV = "L2I_BENCH_FAILPOINT_ONCE"
STAGES = ("decode", "classifier", "cell", "publish")
"""The stages of every run, in the order a run reaches them."""
WORKER_STAGES = ("task",)
"""Stages only a Ray worker reaches (``--executor ray``)."""


def failpoint(stage: str) -> None:
    """Stop here with the configured signal if the environment names this stage."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, signame = spec.partition("=")
    if name != stage:
        return
    marker = os.environ.get(ONCE_ENV)
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            return  # another process fired already
    os.environ.pop(ENV)  # once per process: a TERM handler may go on to publish
    os.kill(os.getpid(), getattr(signal, f"SIG{signame or 'KILL'}"))
