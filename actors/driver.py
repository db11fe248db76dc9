"""DriverActor: runs the pipeline's stages inside the Ray cluster and owns the scheduler.

Its log lines (the stages, the scheduler's activations and chunks, progress) go to its stderr, which
Ray forwards to the command's output, and to ``run.log`` in the run directory beside the entry
point's own lines (the actor runs on the entry point's node, so the file is the same one).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator

from skillmoe_ray.config import RunConfig
from skillmoe_ray.data.instances import Instance
from skillmoe_ray.method.results import ServingPreparation
from skillmoe_ray.pipeline import Pipeline
from skillmoe_ray.progress import log_progress, ray_progress
from skillmoe_ray_actors.placement import PlacementScheduler

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's run.log format


def log_to_run_file(run_dir: str) -> logging.Handler:
    """Append this process's INFO log lines to ``<run_dir>/run.log``."""
    os.makedirs(run_dir, exist_ok=True)
    handler = logging.FileHandler(os.path.join(run_dir, "run.log"), mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


class DriverActor:
    """Skill inference, recruitment and aggregation for one run; experts are reached through Ray."""

    def __init__(self, cfg: RunConfig, show_progress: bool = False):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        log_to_run_file(cfg.run_dir)
        self.cfg = cfg
        # A terminal gets Ray's bars; anything else (nohup, Slurm, ray job logs) progress lines
        self.progress = ray_progress if show_progress else log_progress(cfg.scheduler.progress_every_s)

    def prepare(self, val: list[Instance]) -> ServingPreparation:
        """The validation-side stages online serving needs (cached after a batch run)."""
        scheduler = PlacementScheduler(self.cfg, self.progress, t0=time.perf_counter())
        try:
            return Pipeline(self.cfg, scheduler).prepare(val)
        finally:
            scheduler.close()

    def run(self, val: list[Instance], test: list[Instance]) -> Iterator[tuple[str, dict]]:
        """Every stage of the batch pipeline, streamed: ``("stage", row)`` as each stage ends, then
        ``("results", results.json's content)``; call it with ``num_returns="streaming"``.

        Why a stream: the W&B run lives in the entry point's process (it must outlive this actor to be
        marked failed when the run dies, and it logs the report written there), and a streamed actor
        method is Ray's own ordered channel from here to there: no extra actor, no polling, and an
        error here reaches the caller as the stream's next item. The pipeline runs in a thread that
        feeds the stream, because its stages report through a callback.
        """
        events: queue.Queue = queue.Queue()

        def work() -> None:
            scheduler = PlacementScheduler(self.cfg, self.progress, t0=time.perf_counter())
            try:
                pipeline = Pipeline(self.cfg, scheduler, on_stage=lambda row: events.put(("stage", row)))
                results = pipeline.run(val, test)
            except BaseException as exc:  # re-raised in the stream, so the caller gets it
                events.put(("error", exc))
                return
            finally:
                scheduler.close()
            events.put(("results", results))

        threading.Thread(target=work, name="pipeline", daemon=True).start()
        while True:
            kind, payload = events.get()
            if kind == "error":
                raise payload
            yield kind, payload
            if kind == "results":
                return
