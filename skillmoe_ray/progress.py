"""Progress of long stages: a bar on a terminal, log lines with counts, rate and ETA elsewhere.

Library code asks a :data:`ProgressFactory` for a bar; the entry point picks the factory (tqdm in a
terminal, Ray's tqdm inside actors, and :func:`log_progress` when the output goes to a file, nohup,
Slurm or ``ray job logs``: a line at least every few seconds, also while one long group generates).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("skillmoe_ray.progress")


def plain_colors_off_terminal(environ=os.environ, stream=sys.stderr) -> None:
    """Output that is not a terminal (a file, nohup, CI) gets no ANSI colour codes from Ray's log prefixes
    ("(ExpertActor pid=...)"): Ray's driver reads ``RAY_COLOR_PREFIX`` as it prints. A value already set
    wins."""
    if not stream.isatty():
        environ.setdefault("RAY_COLOR_PREFIX", "0")


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


def duration(seconds: float) -> str:
    """``seconds`` for a person: 42 s, 3m05s, 2h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def rate_line(desc: str, done: int, total: int, elapsed: float, unit: str) -> str:
    """``desc: done/total unit (pct), rate unit/s, ETA, elapsed``.

    The rate and ETA are unknown until work is done.
    """
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = duration((total - done) / rate) if rate > 0 else "unknown"
    share = f" ({100 * done / total:.0f}%)" if total else ""
    return (
        f"{desc}: {done}/{total} {unit}{share}, {rate:.3g} {unit}/s, ETA {eta}, elapsed {duration(elapsed)}"
    )


class LogBar:
    """A bar for output that is not a terminal: a log line every ``every_s`` seconds until closed.

    A timer thread writes the lines, so they keep coming while one long group (or chunk) generates
    and no update arrives; the rate is the work finished since the bar opened.
    """

    def __init__(self, total: int, desc: str, every_s: float, unit: str = "requests"):
        self.total, self.desc, self.every_s, self.unit = total, desc, every_s, unit
        self.done, self.start = 0, time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        log.info("%s: %d %s to generate", desc, total, unit)
        self._timer = threading.Thread(target=self._tick, name=f"progress-{desc}", daemon=True)
        self._timer.start()

    def line(self) -> str:
        with self._lock:
            done = self.done
        return rate_line(self.desc, done, self.total, time.monotonic() - self.start, self.unit)

    def _tick(self) -> None:
        while not self._closed.wait(self.every_s):
            log.info("%s", self.line())

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._timer.join(timeout=1)
        elapsed = time.monotonic() - self.start
        log.info("%s: %d/%d %s done in %s", self.desc, self.done, self.total, self.unit, duration(elapsed))


def log_progress(every_s: float) -> ProgressFactory:
    """A factory of :class:`LogBar`: a progress line at least every ``every_s`` seconds."""

    def factory(total: int, desc: str) -> Bar:
        return LogBar(total, desc, every_s)

    return factory


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
        self.total, self.desc, self.every_s = total, desc, every_s
        self.done, self.start, self.last_line = 0, time.monotonic(), time.monotonic()
        self.log = log
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
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
            self.bar.set_postfix_str(f"{who} loss {loss:.3f}")
            return
        now = time.monotonic()
        if now - self.last_line >= self.every_s:
            self.last_line = now
            self.log.info(
                "%s (%s loss %.3f)",
                rate_line(self.desc, self.done, self.total, now - self.start, "steps"),
                who,
                loss,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
