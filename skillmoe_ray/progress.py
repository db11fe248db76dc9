"""Progress bars for long stages, off when output is not a terminal.

Library code asks a :data:`ProgressFactory` for a bar; the entry point picks the factory (tqdm in a
terminal, Ray's tqdm inside actors, nothing when piped to a file or CI log).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


ProgressFactory = Callable[[int, str], Bar]


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def no_progress(total: int, desc: str) -> Bar:
    """A bar that shows nothing."""
    return _NoBar()


def tqdm_progress(total: int, desc: str) -> Bar:
    """A tqdm bar on stderr when it is a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", leave=False)


def ray_progress(total: int, desc: str) -> Bar:
    """A bar drawn by the Ray driver for work running inside an actor."""
    from ray.experimental.tqdm_ray import tqdm

    return tqdm(total=total, desc=desc)


class StepProgress:
    """Progress of work reported from other processes as (who, steps, loss) items on a queue.

    A tqdm bar on a terminal; otherwise a log line (counts, rate, ETA) at most every ``every_s``
    seconds, so a run under nohup or CI shows that it moves.
    """

    def __init__(self, total: int, desc: str, every_s: float = 15.0):
        import logging
        import time

        self.total, self.desc, self.every_s = total, desc, every_s
        self.done, self.start, self.last_line = 0, time.monotonic(), time.monotonic()
        self.log = logging.getLogger("skillmoe_ray.progress")
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step")

    def drain(self, queue, timeout: float) -> None:
        """Take every item waiting on ``queue`` (waiting up to ``timeout`` for the first)."""
        import queue as queue_module

        try:
            item = queue.get(timeout=timeout) if timeout else queue.get_nowait()
            while True:
                self._advance(*item)
                item = queue.get_nowait()
        except queue_module.Empty:
            pass

    def _advance(self, who: str, steps: int, loss: float) -> None:
        import time

        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix_str(f"{who} loss {loss:.3f}")
            return
        now = time.monotonic()
        if now - self.last_line >= self.every_s:
            self.last_line = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            self.log.info("%s: %d/%d steps, %.1f steps/s, ETA %.0f s (%s loss %.3f)",
                          self.desc, self.done, self.total, rate, eta, who, loss)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
