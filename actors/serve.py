"""Ray Serve application: skill-routed answers over an OpenAI-compatible HTTP API.

Two deployments (three kinds under ``serve.topology=per_expert``), so that Serve's own back-pressure bounds
the work:

- :class:`~skillmoe_ray_actors.serve_answerer.SkillMoEAnswerer` (:mod:`skillmoe_ray_actors.serve_answerer`)
  owns the micro-batcher and the OnlineRouter over the pool: its own expert actors (``single``) or each
  model's deployment (``per_expert``, :mod:`skillmoe_ray_actors.serve_experts`). Serve sends it at most
  ``serve.max_ongoing_requests`` requests at a time and queues at most ``serve.max_queued_requests`` more;
  beyond that Serve rejects a call with ``BackPressureError``. Its queue and ongoing requests are what
  Serve's metrics and autoscaling see.
- :class:`SkillMoEService` is the HTTP ingress: it checks the API key (401) and the body's type (415),
  validates requests (400), hands them to the answerer, and maps what comes back to HTTP: 503 with
  Retry-After when Serve rejected the call, 502 when experts failed, 504 past ``serve.request_timeout_s``
  (the call is then cancelled in Serve), and a JSON reply or an SSE stream
  (``skillmoe_ray.serving.streaming``). Every error is OpenAI's error object with a request id; the
  details of a failure are logged under that id, never sent. It keeps the /v1/stats counters, so
  rejected requests are counted although they never reach the answerer.

Request validation and response shapes live in ``skillmoe_ray.serving.openai_api``, micro-batching in
``skillmoe_ray.serving.batching``, answering in ``skillmoe_ray.serving.router``. Two ways to start it:
``python -m skillmoe_ray.run mode=serve +experiment=demo`` and ``serve run jobs/serve_config.yaml``
(which calls :func:`skillmoe_ray_actors.serve_app.build_app`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from skillmoe_ray.config import RunConfig
from skillmoe_ray.serving import streaming
from skillmoe_ray.serving.completions import parse_completion, text_completion_response
from skillmoe_ray.serving.errors import Refused, api_keys, check_json, check_key, public_message
from skillmoe_ray.serving.openai_api import (
    BadRequest,
    Job,
    completion_response,
    model_names,
    model_object,
    models_response,
    parse_request,
)
from skillmoe_ray.serving.router import Outcome
from skillmoe_ray_actors import serve_http
from skillmoe_ray_actors.serve_http import error_response, guarded, request_id

log = logging.getLogger(__name__)
app = FastAPI(title="skillmoe-ray", description="Skill-routed answers from a pool of expert LLMs")
serve_http.install(app)

# Seconds a request may wait for Serve to hand it to the answerer before its stream starts anyway
# (a rejection comes at once; a wait this long means it is queued, not refused).
ADMISSION_S = 1.0
# Seconds between keep-alive comments of a stream while the experts work.
KEEPALIVE_S = 15.0
# Seconds /v1/stats and /healthz wait for the answerer before using what they know (it may be busy).
PROBE_S = 2.0
# Requests the ingress takes beyond what the answerer can hold: /healthz, /v1/stats, 400s, rejections.
INGRESS_HEADROOM = 64
# store_failures: chunks generated and answered whose cache write failed (a full or unwritable cache_dir)
# loads_ahead: of the activations, loads started while another model generated (scheduler.load_ahead)
ANSWERER_STATS = ("engine_generate_calls", "activations", "loads_ahead", "batches", "largest_batch",
                  "store_failures")


class PendingAnswer:
    """One request handed to the answerer: Serve admits it (or rejects it at once), then its outcome comes."""

    def __init__(self, answerer: DeploymentHandle, job: Job, timeout_s: float):
        self.events = answerer.options(stream=True).answer.remote(job)
        self.admission = asyncio.ensure_future(self.events.__anext__())
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s

    async def refused(self) -> Outcome | None:
        """The outcome of a request Serve would not take (503, or 502 without an answerer); None otherwise."""
        done, _ = await asyncio.wait({self.admission}, timeout=ADMISSION_S)
        return self._failed(self.admission.exception()) if done and self.admission.exception() else None

    async def outcome(self) -> tuple[Outcome, dict | None]:
        """(outcome, the answerer's stats then) within the request's time limit."""
        try:
            return await asyncio.wait_for(self._receive(), max(0.0, self.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            self.cancel()
            return Outcome(504, error=f"no answer within {self.timeout_s:g} s"), None
        except Exception as exc:
            return self._failed(exc), None

    async def _receive(self) -> tuple[Outcome, dict]:
        await self.admission
        return await self.events.__anext__()

    def cancel(self) -> None:
        """Stop waiting; Serve cancels the call at the answerer (best effort)."""
        self.admission.cancel()
        self.events.cancel()

    @staticmethod
    def _failed(exc: BaseException) -> Outcome:
        if isinstance(exc, BackPressureError):
            return Outcome(503, error=f"server busy: {exc.message}")
        return Outcome(502, error=f"answering failed: {exc}")


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class SkillMoEService:
    """The HTTP ingress: the gate, validation, replies (JSON or SSE), the error mapping and the counters."""

    def __init__(self, cfg: RunConfig, answerer: DeploymentHandle):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.cfg = cfg
        self.answerer = answerer
        self.keys = api_keys(cfg.serve.api_keys)
        serve_http.CORS_ORIGINS[:] = cfg.serve.cors_origins
        self.started = int(time.time())  # the models' ``created``
        self.counts: Counter[str] = Counter()
        self.failure_streak = 0  # requests in a row that failed upstream, as /healthz reports them
        self.in_flight = 0
        self.answerer_stats: dict = {}  # the answerer's latest stats, for when it is too busy to ask

    def _gate(self, request: Request, body: bool = False) -> None:
        """Refused (401) without a listed API key when keys are set; (415) a body that is not JSON."""
        check_key(self.keys, request.headers.get("authorization"))
        if body:
            check_json(request.headers.get("content-type"))

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

    async def _job(self, request: Request, parse) -> Job:
        """The request's Job (Refused or BadRequest when the gate or validation refuses it)."""
        self._gate(request, body=True)
        s = self.cfg.serve
        return parse(await self._read_body(request), s.max_body_bytes, self.cfg.recruit.k, s.max_n)

    @app.post("/v1/chat/completions")
    @guarded
    async def chat(self, request: Request):
        return await self._answer(request, parse_request, completion_response)

    @app.post("/v1/completions")
    @guarded
    async def completions(self, request: Request):
        return await self._answer(request, parse_completion, text_completion_response)

    async def _answer(self, request: Request, parse, respond):
        self.counts["requests"] += 1
        rid = request_id(request)
        try:
            job = await self._job(request, parse)
        except (Refused, BadRequest) as exc:
            self.counts["bad_requests"] += 1
            if isinstance(exc, Refused):
                raise
            return error_response(400, str(exc), rid, exc.param)
        log.info("request %s is %s", rid, job.request_id)
        pending = PendingAnswer(self.answerer, job, self.cfg.serve.request_timeout_s)
        self.in_flight += 1
        try:
            refused = await pending.refused()
        except BaseException:  # the client hung up while waiting for admission: it is no longer queued
            self.in_flight -= 1
            pending.cancel()
            raise
        if refused:
            self.in_flight -= 1
            return self._failure(self._count(refused), rid)
        if job.stream:
            return StreamingResponse(
                self._stream(job, pending, rid),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "x-request-id": rid},
            )
        outcome = await self._settle(pending)
        if outcome.status != 200:
            return self._failure(outcome, rid)
        return JSONResponse(
            respond(job, outcome.choices(), outcome.usage, outcome.skillmoe), headers={"x-request-id": rid}
        )

    async def _settle(self, pending: PendingAnswer) -> Outcome:
        """The request's outcome, counted."""
        try:
            outcome, stats = await pending.outcome()
        finally:
            self.in_flight -= 1
        if stats:  # the answer's counters; the deployments' state stays the last /v1/stats asked for
            self.answerer_stats = {**self.answerer_stats, **stats}
        return self._count(outcome)

    async def _stream(self, job: Job, pending: PendingAnswer, rid: str):
        """The SSE reply: the role chunk at once, keep-alives while the experts work, then the answer."""
        created = int(time.time())
        settled = asyncio.ensure_future(self._settle(pending))
        try:
            yield streaming.role_event(job, created)
            while not (await asyncio.wait({settled}, timeout=KEEPALIVE_S))[0]:
                yield streaming.KEEPALIVE
            o = settled.result()
            events = (
                streaming.reply_events(job, created, o.choices(), o.usage, o.skillmoe)
                if o.status == 200
                else streaming.error_events(self._message(o, rid), o.status, rid)
            )
            for event in events:
                yield event
        finally:  # the client went away: stop the work it asked for
            if not settled.done():
                settled.cancel()
                pending.cancel()

    def _count(self, outcome: Outcome) -> Outcome:
        key = {200: "completed", 503: "rejected", 504: "timeouts"}.get(outcome.status, "failed")
        self.counts[key] += 1
        if key in ("completed", "failed"):
            self.failure_streak = 0 if key == "completed" else self.failure_streak + 1
        return outcome

    def _retry_after_s(self) -> int:
        return max(1, round(self.answerer_stats.get("retry_after_s", 1)))

    def _message(self, outcome: Outcome, rid: str) -> str:
        """What the client reads of a failure; its details are logged under the request id."""
        log.warning("request %s failed (%d): %s", rid, outcome.status, outcome.error)
        if outcome.status == 503:
            return f"{outcome.error}; retry in {self._retry_after_s()} s"
        return public_message(outcome.status, outcome.error)

    def _failure(self, outcome: Outcome, rid: str) -> JSONResponse:
        headers = {"Retry-After": str(self._retry_after_s())} if outcome.status == 503 else None
        return error_response(outcome.status, self._message(outcome, rid), rid, headers=headers)

    @app.get("/v1/models")
    @guarded
    async def models(self, request: Request):
        self._gate(request)
        return JSONResponse(models_response(self.cfg.recruit.k, self.started))

    @app.get("/v1/models/{name}")
    @guarded
    async def model(self, request: Request):
        self._gate(request)
        name = request.path_params["name"]
        if name not in model_names(self.cfg.recruit.k):
            return error_response(
                404, f"the model {name!r} does not exist; see GET /v1/models", request_id(request), "model"
            )
        return JSONResponse(model_object(name, self.started))

    async def _probe(self, method: str) -> tuple[bool, object]:
        """(answered, reply) of a quick call to the answerer; (False, None) when it is too busy to
        answer in time."""
        response = getattr(self.answerer, method).remote()
        task = asyncio.ensure_future(response)
        done, _ = await asyncio.wait({task}, timeout=PROBE_S)
        if not done:
            response.cancel()
            return False, None
        if task.exception():
            if isinstance(task.exception(), BackPressureError):
                return False, None
            return True, task.exception()
        return True, task.result()

    @app.get("/healthz")
    @guarded
    async def healthz(self, request: Request) -> JSONResponse:
        """ok unless requests keep failing or the answerer reports itself broken (busy is healthy); no key."""
        limit = self.cfg.serve.unhealthy_after
        why = (
            f"the last {self.failure_streak} requests all failed upstream"
            if limit and self.failure_streak >= limit
            else None
        )
        answered, reply = (False, None) if why else await self._probe("health")
        if answered and isinstance(reply, BaseException):
            log.warning("request %s: the answerer does not answer: %r", request_id(request), reply)
            why = "the answerer does not answer"
        elif answered:
            why = reply["unhealthy"]
        if why:
            return error_response(503, why, request_id(request))
        deployments = reply.get("deployments") if answered and isinstance(reply, dict) else None
        return JSONResponse({"status": "ok", **({"deployments": deployments} if deployments else {})})

    @app.get("/v1/stats")
    @guarded
    async def stats(self, request: Request):
        self._gate(request)
        answered, reply = await self._probe("stats")
        if answered and isinstance(reply, dict):
            self.answerer_stats = reply
        b = self.answerer_stats
        return JSONResponse(
            {
                **{
                    k: self.counts.get(k, 0)
                    for k in ("requests", "completed", "failed", "bad_requests", "rejected", "timeouts")
                },
                **{k: b.get(k, 0) for k in ANSWERER_STATS},
                "queue_depth": self.in_flight,
                "resident_experts": b.get("resident_experts", []),
                "resident": b.get("resident", []),
                # per_expert: each model's deployment (replicas, the router's calls in flight, failures)
                **({"deployments": b["deployments"]} if "deployments" in b else {}),
            }
        )
