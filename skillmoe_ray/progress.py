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
