"""ExpertActor: one Ray actor per expert model, holding that model's engine.

The actor is thin on purpose: every method delegates to the engine, so everything worth testing
lives in the library. Its process survives unloads, so the backend's import cost is paid once.
"""

from __future__ import annotations

import logging

from skillmoe_ray.config import EngineConfig, ModelSpec
from skillmoe_ray.engines import create_engine
from skillmoe_ray.engines.base import EngineInfo, GenOutput, GenRequest


class ExpertActor:
    """An expert model's engine inside a Ray worker process."""

    def __init__(self, spec: ModelSpec, engine: EngineConfig):
        logging.basicConfig(level=logging.WARNING)
        self.engine = create_engine(engine, spec)
        self.engine.prepare()

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

    def info(self) -> EngineInfo:
        return self.engine.info
