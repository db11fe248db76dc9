"""The answering deployment of the Serve application: micro-batches of requests, routed and answered.

:class:`SkillMoEAnswerer` owns the micro-batcher and the OnlineRouter over a generation service, whose
executor reaches the pool in the configured topology (``serve.topology``):

- ``single``: a PlacementScheduler whose ExpertActors hold the engines (the replica time-shares the GPU
  slots, :mod:`skillmoe_ray_actors.placement`);
- ``per_expert``: a DeploymentExecutor over each model's own Serve deployment
  (:mod:`skillmoe_ray_actors.serve_experts`), given as deployment handles.

Either way each micro-batch makes one call per model it needs. Serve sends the answerer at most
``serve.max_ongoing_requests`` requests at a time and queues at most ``serve.max_queued_requests`` more;
the ingress (:mod:`skillmoe_ray_actors.serve`) maps what it answers to HTTP.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from concurrent.futures import ThreadPoolExecutor

from ray import serve
from ray.serve.handle import DeploymentHandle

from skillmoe_ray.config import RunConfig
from skillmoe_ray.errors import one_line
from skillmoe_ray.generation import GenerationService
from skillmoe_ray.method.results import ServingPreparation
from skillmoe_ray.method.skills import load_embedder
from skillmoe_ray.serving.batching import MicroBatcher
from skillmoe_ray.serving.choices import choice_jobs, merge
from skillmoe_ray.serving.openai_api import Job
from skillmoe_ray.serving.router import OnlineRouter, Outcome

log = logging.getLogger(__name__)


def pool_executor(cfg: RunConfig, models: dict[str, DeploymentHandle] | None):
    """The executor of the topology: the models' deployments (per_expert) or the replica's own actors."""
    if models:
        from skillmoe_ray_actors.serve_experts import DeploymentExecutor

        return DeploymentExecutor(models, max_retries=cfg.scheduler.max_retries,
                                  call_timeout_s=cfg.serve.request_timeout_s)
    from skillmoe_ray_actors.placement import PlacementScheduler

    return PlacementScheduler(cfg)


@serve.deployment(ray_actor_options={"num_cpus": 0}, health_check_period_s=10)
class SkillMoEAnswerer:
    """One answering replica: a micro-batch queue and an OnlineRouter over the pool's experts."""

    def __init__(self, cfg: RunConfig, preparation: ServingPreparation,
                 models: dict[str, DeploymentHandle] | None = None):
        """``models``: each pool model's deployment handle (topology per_expert); None: the replica starts
        its own expert actors (single)."""
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.cfg = cfg
        self.scheduler = pool_executor(cfg, models)
        # failures="report": a failed expert's requests are answered 502, the others still 200
        self.generation = GenerationService(cfg, self.scheduler, failures="report")
        self.router = OnlineRouter(cfg, self.generation, preparation,
                                   load_embedder(cfg.skills.embedding_model))
        # swap-aware: requests whose models are resident are answered before a cold load for the others
        self.batcher = MicroBatcher(self.router.answer, cfg.serve.window_ms / 1000, cfg.serve.max_batch,
                                    cfg.serve.max_cold_wait_ms / 1000)
        self.used = self.router.warm_order()  # every model a request may need
        # before Serve counts this replica ready; in a thread of its own, where deployment calls may wait
        with ThreadPoolExecutor(1) as warming:
            resident = warming.submit(self.generation.warm_up, self.used).result()
        log.info("warm-up: resident %s; on first use: %s", resident, self.cold() or "none")
        self.failure_streak = 0  # requests in a row that failed upstream: a replica that cannot serve
        # What the replica holds now (its imports, the preparation, the embedder) lives as long as it does:
        # frozen, Python's full collections scan only what batches create (over this heap one took 0.4 s)
        gc.freeze()

    async def answer(self, job: Job):
        """Streamed to the ingress: None once the request is here (Serve admitted it), then
        (outcome, stats)."""
        yield None
        try:  # the n replies are submitted together, so they share one micro-batch (and its experts' answers)
            outcome = merge(list(await asyncio.gather(*(self.batcher.submit(j) for j in choice_jobs(job)))))
        except Exception as exc:  # the whole batch failed; this request's answer is lost, the service is not
            log.error("request %s: answering failed", job.request_id, exc_info=exc)
            outcome = Outcome(502, error=f"answering failed: {one_line(exc)}")
        self.failure_streak = 0 if outcome.status == 200 else self.failure_streak + 1
        yield outcome, self.counters()

    async def stats(self) -> dict:
        """The counters and, per_expert, each model's deployment (``GET /v1/stats``)."""
        stats = self.counters()
        if hasattr(self.scheduler, "deployment_stats"):  # per_expert: each model's deployment
            stats["deployments"] = await asyncio.to_thread(self.scheduler.deployment_stats)
        return stats

    def counters(self) -> dict:
        """What the answerer counts itself, cheap enough to send with every answer. The deployments' state is
        not: it asks Serve's controller and calls every model's deployment, which once per answered request
        kept the answerer's process and the models' replicas busy with it (per_expert answered 6x slower)."""
        b = self.batcher.stats
        return {
            "engine_generate_calls": self.scheduler.generate_calls,
            "activations": sum(self.scheduler.activations.values()),
            "loads_ahead": self.scheduler.ahead.started,
            "batches": b.batches,
            "largest_batch": b.largest_batch,
            "store_failures": self.generation.store_failures,
            "retry_after_s": self.batcher.retry_after(),
            "resident_experts": self.scheduler.resident_experts(),
            "resident": self.scheduler.resident_experts(),
            "cold": self.cold(),
        }

    def cold(self) -> list[str]:
        """The models a request may need that are not resident now: they load on first use."""
        resident = set(self.scheduler.resident_experts())
        return [m for m in self.used if m not in resident]

    async def health(self) -> dict:
        health = {"unhealthy": self._unhealthy()}
        if hasattr(self.scheduler, "deployment_stats"):
            health["deployments"] = await asyncio.to_thread(self.scheduler.deployment_stats)
        return health

    def _unhealthy(self) -> str | None:
        """Why this replica cannot serve, or None."""
        if not self.batcher.alive():
            return "the batching loop stopped"
        limit = self.cfg.serve.unhealthy_after
        if limit and self.failure_streak >= limit:
            return f"the last {self.failure_streak} requests all failed upstream"
        return None

    def check_health(self) -> None:
        """Serve's health check: a dead batching loop, or requests that all fail, make the replica unhealthy
        (and restarted)."""
        why = self._unhealthy()
        if why:
            raise RuntimeError(why)
