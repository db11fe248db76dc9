"""SIGTERM (``kill``, Slurm's time limit, ``docker stop``) ends a run the way Ctrl-C does.

Python's default SIGTERM action ends the process at once, so no ``finally`` runs: the W&B run would
stay open instead of being marked failed. :func:`sigterm_exits` turns the signal into
``SystemExit(143)`` in the main thread, so the run unwinds (the W&B run is marked failed, Ray is shut
down) and the process still exits with the status a SIGTERM gives.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGTERM_EXIT = 128 + signal.SIGTERM


class _Terminated:
    """Whether SIGTERM arrived (code it interrupts, such as Ray's ``get``, may turn the exit into another)."""

    signalled = False


def _exit_on_sigterm(signum, frame) -> None:
    _Terminated.signalled = True
    print("stopped by SIGTERM: every finished chunk and stage is kept in the cache; rerun to resume",
          file=sys.stderr, flush=True)
    raise SystemExit(SIGTERM_EXIT)


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """While inside, SIGTERM raises SystemExit(143) in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _Terminated.signalled = False
    try:
        yield
    except BaseException:
        if (
            _Terminated.signalled
        ):  # whatever the interrupted call made of the SystemExit, the run ends as SIGTERM's
            raise SystemExit(SIGTERM_EXIT) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
