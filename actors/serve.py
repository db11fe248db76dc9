"""Ray Serve application: skill-routed answers over an OpenAI-compatible HTTP API.

Thin on purpose: request validation and response shapes live in ``skillmoe_ray.openai_api``,
micro-batching in ``skillmoe_ray.batching``, answering in ``skillmoe_ray.online``. This module
maps them to HTTP (400 bad request, 502 expert failure, 503 queue full with Retry-After, 504 timeout)
and wires them to Ray: the replica owns a PlacementScheduler whose ExpertActors hold the engines.

Two ways to start it: ``python -m skillmoe_ray.run mode=serve +experiment=demo`` and
``serve run jobs/serve_config.yaml`` (which calls :func:`build_app`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from skillmoe_ray.batching import MicroBatcher, QueueFull
from skillmoe_ray.config import RunConfig
from skillmoe_ray.online import OnlineRouter
from skillmoe_ray.openai_api import (
    BadRequest,
    completion_response,
    error_body,
    models_response,
    parse_request,
)
from skillmoe_ray.pipeline import Pipeline
from skillmoe_ray.skills import load_embedder
from skillmoe_ray_actors.placement import PlacementScheduler

log = logging.getLogger(__name__)
app = FastAPI(title="skillmoe-ray", description="Skill-routed answers from a pool of expert LLMs")


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, status), status_code=status, headers=headers)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=100_000, health_check_period_s=10)
@serve.ingress(app)
class SkillMoEService:
    """One replica: validation, a bounded micro-batch queue, and an OnlineRouter over Ray experts."""

    def __init__(self, cfg: RunConfig, preparation: dict):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.cfg = cfg
        self.scheduler = PlacementScheduler(cfg)
        pipe = Pipeline(cfg, self.scheduler)
        pipe.tolerate_failures = True
        self.router = OnlineRouter(pipe, preparation, load_embedder(cfg.skills.embedding_model))
        s = cfg.serve
        self.batcher = MicroBatcher(self.router.answer, s.window_ms / 1000, s.max_batch, s.max_queue)
        self.counts: Counter[str] = Counter()
        self.failure_streak = 0  # requests in a row that failed upstream: a replica that cannot serve

    async def _read_body(self, request: Request) -> bytes:
        """The body, refusing (BadRequest) anything over the limit before reading it all."""
        limit = self.cfg.serve.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BadRequest(f"request body is {declared} bytes; the limit is {limit}")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BadRequest(f"request body is over the limit of {limit} bytes")
        return body

    @app.post("/v1/chat/completions")
    async def chat(self, request: Request) -> JSONResponse:
        self.counts["requests"] += 1
        try:
            job = parse_request(await self._read_body(request), self.cfg.serve.max_body_bytes, self.cfg.recruit.k)
        except BadRequest as exc:
            self.counts["bad_requests"] += 1
            return _error(400, str(exc), "invalid_request_error")
        try:
            outcome = await asyncio.wait_for(self.batcher.submit(job), self.cfg.serve.request_timeout_s)
        except QueueFull as exc:
            self.counts["rejected"] += 1
            return _error(503, str(exc), "overloaded", {"Retry-After": str(exc.retry_after_s)})
        except asyncio.TimeoutError:
            self.counts["timeouts"] += 1
            return _error(504, f"no answer within {self.cfg.serve.request_timeout_s} s", "timeout")
        except Exception as exc:  # the whole batch failed; this request's answer is lost, the service is not
            self.counts["failed"] += 1
            self.failure_streak += 1
            return _error(502, f"answering failed: {exc}", "upstream_error")
        if outcome.status != 200:
            self.counts["failed"] += 1
            self.failure_streak += 1
            return _error(outcome.status, outcome.error or "expert failure", "upstream_error")
        self.counts["completed"] += 1
        self.failure_streak = 0
        return JSONResponse(completion_response(job, outcome.content, outcome.finish_reason, outcome.usage, outcome.skillmoe))

    @app.get("/v1/models")
    async def models(self) -> dict:
        return models_response(self.cfg.recruit.k)

    def _unhealthy(self) -> str | None:
        """Why this replica cannot serve, or None."""
        if not self.batcher.alive():
            return "the batching loop stopped"
        limit = self.cfg.serve.unhealthy_after
        if limit and self.failure_streak >= limit:
            return f"the last {self.failure_streak} requests all failed upstream"
        return None

    @app.get("/healthz")
    async def healthz(self) -> JSONResponse:
        why = self._unhealthy()
        return _error(503, why, "unhealthy") if why else JSONResponse({"status": "ok"})

    @app.get("/v1/stats")
    async def stats(self) -> dict:
        b = self.batcher.stats
        return {
            **{k: self.counts.get(k, 0) for k in ("requests", "completed", "failed", "bad_requests", "rejected", "timeouts")},
            "engine_generate_calls": self.scheduler.generate_calls,
            "activations": sum(self.scheduler.activations.values()),
            "queue_depth": self.batcher.depth,
            "batches": b.batches,
            "largest_batch": b.largest_batch,
            "resident_experts": self.scheduler.resident_experts(),
        }

    def check_health(self) -> None:
        """Serve's health check: a dead batching loop, or requests that all fail, make the replica unhealthy
        (and restarted)."""
        why = self._unhealthy()
        if why:
            raise RuntimeError(why)


def build_app(args: dict) -> serve.Application:
    """Application builder for ``serve run``: args.overrides are Hydra overrides (e.g. +experiment=demo)."""
    from skillmoe_ray.run import prepare_service

    cfg, preparation = prepare_service(list(args.get("overrides", [])))
    return SkillMoEService.bind(cfg, preparation)


def deploy(cfg: RunConfig, preparation: dict, blocking: bool = True) -> None:
    """Start the HTTP proxy on cfg.serve.host:port and run the application; block until interrupted."""
    import signal
    import threading

    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(SkillMoEService.bind(cfg, preparation), name="skillmoe", route_prefix="/")
    print(f"skillmoe-ray is serving on http://{cfg.serve.host}:{cfg.serve.port} "
          "(POST /v1/chat/completions, GET /v1/models /v1/stats /healthz); Ctrl-C stops it", flush=True)
    if not blocking:
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
