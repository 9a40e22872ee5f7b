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
published files staged, one of them renamed into place).
"""

from __future__ import annotations

import os
import signal

ENV = "L2I_BENCH_FAILPOINT"
STAGES = ("decode", "classifier", "cell", "publish")


def failpoint(stage: str) -> None:
    """Stop here with the configured signal if the environment names this stage."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, signame = spec.partition("=")
    if name != stage:
        return
    os.environ.pop(ENV)  # once per process: a TERM handler may go on to publish
    os.kill(os.getpid(), getattr(signal, f"SIG{signame or 'KILL'}"))
