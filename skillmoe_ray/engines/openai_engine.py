"""OpenAI-compatible engine: the expert runs behind an HTTP server this project does not manage.

For a pool already deployed with ``vllm serve``, SGLang, this project's own Serve endpoint, or a
hosted API. The expert's ``path`` is the model name the server knows; ``engine.options.base_url``
is the server (``endpoints`` gives some experts their own server). Loading checks that the server
answers and serves the model, so a wrong URL or name fails before any stage runs, naming both.
Sleep and wake do not apply (the server owns the GPU); generation sends the requests of a batch
concurrently, each with its own seed, and retries rate limits and server errors with backoff.

Only the standard library is used, so the engine adds no dependency.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from skillmoe_ray.engines.base import Engine, GenOutput, GenRequest
from skillmoe_ray.errors import EngineError

log = logging.getLogger(__name__)

RETRY_STATUSES = (408, 409, 429, 500, 502, 503, 504)


class OpenAIEngine(Engine):
    """Chat completions from an OpenAI-compatible server, one HTTP request per GenRequest."""

    name = "openai"
    OPTIONS = {
        # the server's API root, ending in /v1
        "base_url": "http://localhost:8000/v1",
        # expert name -> API root, for experts served elsewhere than base_url
        "endpoints": {},
        # environment variable holding the API key (unset or empty: no Authorization header)
        "api_key_env": "OPENAI_API_KEY",
        # requests of one generate() call in flight at once
        "max_concurrency": 16,
        # seconds one HTTP request may take
        "timeout_s": 600.0,
        # retries of a request after a rate limit, a server error or a dropped connection
        "max_retries": 4,
        # first retry delay in seconds, doubled at each retry (a Retry-After header wins)
        "backoff_s": 1.0,
        # check at load that GET /models lists the expert's model (off for servers without /models)
        "check_model": True,
    }

    @property
    def base_url(self) -> str:
        return str(self.options["endpoints"].get(self.spec.name, self.options["base_url"])).rstrip("/")

    def _load(self) -> None:
        self.info.device = self.base_url
        if not self.options["check_model"]:
            return
        try:
            listing = self._call("GET", "/models", None, retries=0)
        except EngineError as exc:
            raise EngineError(f"expert {self.spec.name!r}: the OpenAI-compatible server at {self.base_url} "
                              f"did not answer GET /models ({exc}); start it, fix engine.options.base_url, "
                              "or set engine.options.check_model=false") from exc
        served = [m.get("id") for m in listing.get("data", [])]
        if self.spec.path not in served:
            raise EngineError(f"expert {self.spec.name!r}: the server at {self.base_url} does not serve model "
                              f"{self.spec.path!r}; it serves: {', '.join(map(str, served)) or '(none)'}")

    def _unload(self) -> None:
        pass

    def weight_files(self) -> list[str]:
        """None here: the server holds the weights (nothing to read ahead)."""
        return []

    def _generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        workers = max(1, min(int(self.options["max_concurrency"]), len(requests)))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self._complete, requests))

    def _complete(self, request: GenRequest) -> GenOutput:
        s = request.sampling
        body = {"model": self.spec.path, "messages": request.chat(), "max_tokens": s.max_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed}
        reply = self._call("POST", "/chat/completions", body, retries=int(self.options["max_retries"]))
        try:
            choice = reply["choices"][0]
            usage = reply.get("usage") or {}
            return GenOutput(
                text=choice["message"].get("content") or "",
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
                finish_reason=str(choice.get("finish_reason") or ""),
            )
        except (KeyError, IndexError, TypeError) as exc:
            raise EngineError(f"expert {self.spec.name!r}: unexpected reply from {self.base_url}/chat/completions: "
                              f"{json.dumps(reply)[:300]}") from exc

    def _call(self, method: str, route: str, body: dict | None, retries: int) -> dict:
        """One JSON request, retried with backoff on rate limits, server errors and dropped connections."""
        url = self.base_url + route
        delay = float(self.options["backoff_s"])
        for attempt in range(retries + 1):
            try:
                with urllib.request.urlopen(self._request(method, url, body), timeout=self.options["timeout_s"]) as r:
                    return json.loads(r.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300]
                if exc.code not in RETRY_STATUSES or attempt == retries:
                    raise EngineError(f"{method} {url} answered {exc.code}: {detail}") from exc
                wait = _retry_after(exc.headers.get("Retry-After"), delay)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if attempt == retries:
                    raise EngineError(f"{method} {url} failed: {getattr(exc, 'reason', exc)}") from exc
                wait = delay
            log.warning("%s %s: retry %d/%d in %.1f s", method, url, attempt + 1, retries, wait)
            time.sleep(wait)
            delay *= 2
        raise AssertionError("unreachable")

    def _request(self, method: str, url: str, body: dict | None) -> urllib.request.Request:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.options["api_key_env"] or "", "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        return urllib.request.Request(url, data=data, headers=headers, method=method)


def _retry_after(header: str | None, default: float) -> float:
    """Seconds a Retry-After header asks for (a number of seconds), else ``default``."""
    try:
        return max(0.0, float(header)) if header else default
    except ValueError:
        return default
