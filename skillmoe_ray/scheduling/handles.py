"""How the executor reaches an expert: the :class:`ExpertHandle` shape and its in-process form.

The slot executor only needs an expert's lifecycle (load, sleep, wake, unload), generation, the
post-wake probe and the weight read-ahead. :class:`LocalExpert` drives an engine in the calling
process (tests, benchmarks, the in-process pipeline); ``skillmoe_ray_actors.placement.RayExpert`` forwards the
same calls to an ExpertActor.
"""

from __future__ import annotations

import threading
from typing import Protocol

from skillmoe_ray.engines.base import Engine, EngineInfo, GenOutput, GenRequest


class ExpertHandle(Protocol):
    """How the executor reaches one expert's engine (in-process or a Ray actor)."""

    def load(self) -> dict: ...
    def sleep(self) -> dict: ...
    def wake(self) -> dict: ...
    def unload(self) -> dict: ...
    def generate(self, requests: list[GenRequest]) -> list[GenOutput]: ...
    def probe(self) -> dict: ...
    def prefetch(self) -> None: ...
    def info(self) -> EngineInfo: ...
    def close(self) -> None: ...


class LocalExpert:
    """An engine driven in the calling process."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def load(self) -> dict:
        return self.engine.load()

    def sleep(self) -> dict:
        return self.engine.sleep()

    def wake(self) -> dict:
        return self.engine.wake()

    def unload(self) -> dict:
        return self.engine.unload()

    def generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        return self.engine.generate(requests)

    def probe(self) -> dict:
        return self.engine.probe()

    def prefetch(self) -> None:
        threading.Thread(target=self.engine.prefetch, daemon=True).start()

    def info(self) -> EngineInfo:
        return self.engine.info

    def close(self) -> None:
        self.engine.unload()
