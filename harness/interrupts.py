"""SIGINT and SIGTERM in the sweep driver: one ``Interrupted`` exception, raised where it
is safe. No Ray here (``harness.sweep`` wires it into Tune's loop).

Stopping is safe at any point: every write is atomic and a resume needs only the
manifest, the Parquet commits and the checkpoints in storage. But an exception raised
inside Ray's compiled calls comes out garbled, so inside Tune's loop (``deferred``) the
handler only records the signal, and the sweep's callback raises it between two steps
(``raise_if_signalled``).
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Any, Iterator

# The signal received (None: none yet) and whether raising is deferred (Tune's loop runs).
_STATE: dict[str, Any] = {"received": None, "deferred": False}


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached the driver. A BaseException, like KeyboardInterrupt, so
    that no ``except Exception`` on the way (Tune's, or a callback's) swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` in the main thread (later, when deferred);
    a second signal exits at once. The previous handlers come back on exit."""
    def handler(signum: int, frame: Any) -> None:
        if _STATE["received"] is not None:
            os._exit(128 + signum)
        _STATE["received"] = signum
        if not _STATE["deferred"]:
            raise Interrupted(signum)

    _STATE["received"] = None
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _STATE["received"] = None  # handled by now: a later sweep in this process starts clean


@contextmanager
def deferred() -> Iterator[None]:
    """Within this block a signal is only recorded; ``raise_if_signalled`` raises it."""
    _STATE["deferred"] = True
    try:
        yield
    finally:
        _STATE["deferred"] = False


def raise_if_signalled() -> None:
    if _STATE["received"] is not None:
        raise Interrupted(_STATE["received"])


def interruption(error: BaseException | None) -> Interrupted | None:
    """The ``Interrupted`` behind ``error``, if any: a signal that arrived inside compiled
    code surfaces as another exception caused by it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Interrupted):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
