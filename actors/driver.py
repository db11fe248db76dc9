"""DriverActor: runs the pipeline's stages inside the Ray cluster and owns the scheduler."""

from __future__ import annotations

import logging
import time

from skillmoe_ray.config import RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.pipeline import Pipeline
from skillmoe_ray.progress import no_progress, ray_progress
from skillmoe_ray_actors.placement import PlacementScheduler


class DriverActor:
    """Skill inference, recruitment and aggregation for one run; experts are reached through Ray."""

    def __init__(self, cfg: RunConfig, show_progress: bool = False):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.cfg = cfg
        self.progress = ray_progress if show_progress else no_progress

    def prepare(self, val: list[Instance]) -> dict:
        """The validation-side stages online serving needs (cached after a batch run)."""
        scheduler = PlacementScheduler(self.cfg, self.progress, t0=time.perf_counter())
        try:
            return Pipeline(self.cfg, scheduler).prepare(val)
        finally:
            scheduler.close()

    def run(self, val: list[Instance], test: list[Instance]) -> dict:
        """Every stage of the batch pipeline; returns the content of results.json."""
        scheduler = PlacementScheduler(self.cfg, self.progress, t0=time.perf_counter())
        try:
            return Pipeline(self.cfg, scheduler).run(val, test)
        finally:
            scheduler.close()
