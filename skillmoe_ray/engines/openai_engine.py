"""OpenAI-compatible engine: the expert runs behind an HTTP server this project does not manage.

For a pool already deployed with ``vllm serve``, SGLang, this project's own Serve endpoint, or a
hosted API. The expert's ``path`` is the model name the server knows; ``engine.options.base_url``
is the server (``endpoints`` gives some experts their own server). Loading checks that the server
answers and serves the model, so a wrong URL or name fails before any stage runs, naming both.
Sleep and wake do not apply (the server owns the GPU); generation sends the requests of a batch
concurrently, each with its own seed.

Built on the official ``openai`` SDK rather than hand-written HTTP, because the SDK already does what
a client of a busy server needs, and is maintained against the servers it talks to:

- retries (``max_retries``) of timeouts, dropped connections, 408, 409, 429 and every 5xx, with
  exponential backoff and random jitter (each wait 0-25 % shorter), so many threads rate-limited at
  once do not retry in lockstep;
- a server's ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date) wins over the backoff when
  it asks for a positive wait of at most the SDK's bound (two minutes in openai 3.x); a longer one is
  not retried but fails at once;
- one client per engine: its ``httpx`` connection pool keeps connections alive across requests and
  batches, and is thread-safe, so the ``max_concurrency`` threads of a batch share it;
- a timeout per request (``timeout_s``; connecting may take at most 10 s of it).

The SDK's backoff starts at 0.5 s and is not a public setting; ``backoff_s`` scales it (the one
private hook used, :meth:`_ScaledBackoff._calculate_retry_timeout`; the ``openai`` ceiling in
pyproject.toml keeps it in place). SDK errors become the project's :class:`EngineError`, naming the
method, URL and status as before. ``kwargs`` (``engine.kwargs``, per model ``engine_kwargs``) are extra
fields of every request body, for server-specific sampling settings (vLLM's ``top_k``, ``min_p``...).
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from skillmoe_ray.engines.base import Engine, GenOutput, GenRequest
from skillmoe_ray.errors import EngineError

log = logging.getLogger(__name__)

SDK_INITIAL_BACKOFF_S = 0.5  # openai._constants.INITIAL_RETRY_DELAY, what backoff_s is relative to
CONNECT_TIMEOUT_S = 10.0
# Request-body fields the engine sets itself (kwargs may not override them)
NAMED_FIELDS = {
    "model": "pool.models.<name>.path",
    "messages": "the stage's prompt",
    "max_tokens": "pool.models.<name>.max_tokens or the stage's max_tokens",
    "temperature": "the stage's temperature",
    "top_p": "the stage's top_p",
    "seed": "the run's seed (one per request)",
}


def _sdk():
    try:
        import openai
    except ImportError as exc:
        raise EngineError(
            "the openai engine needs the openai SDK: pip install 'skillmoe-ray[openai]'"
        ) from exc
    return openai


def _client(backoff_s: float, **kwargs):
    """An ``openai.OpenAI`` client whose computed backoff (not a server's Retry-After) is scaled to
    ``backoff_s``."""
    openai = _sdk()

    class _ScaledBackoff(openai.OpenAI):
        def _calculate_retry_timeout(self, remaining_retries, options, response_headers=None):
            wait = super()._calculate_retry_timeout(remaining_retries, options, response_headers)
            if wait == self._parse_retry_after_header(response_headers):
                return wait  # the server said how long
            return wait * backoff_s / SDK_INITIAL_BACKOFF_S

    return _ScaledBackoff(**kwargs)


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
        # retries of a request after a rate limit, a server error, a timeout or a dropped connection
        "max_retries": 4,
        # first retry delay in seconds, doubled at each retry up to 16x, jittered (a Retry-After header wins)
        "backoff_s": 1.0,
        # check at load that GET /models lists the expert's model (off for servers without /models)
        "check_model": True,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.client = None

    @classmethod
    def check_kwargs(cls, kwargs: dict, where: str) -> None:
        """Extra request fields may be anything the server takes, except the fields the engine sets."""
        cls.refuse_named(kwargs, where, NAMED_FIELDS)

    @property
    def base_url(self) -> str:
        return str(self.options["endpoints"].get(self.spec.name, self.options["base_url"])).rstrip("/")

    def prepare(self) -> None:
        _sdk()

    def _load(self) -> None:
        self.info.device = self.base_url
        key = os.environ.get(self.options["api_key_env"] or "", "")
        timeout_s = float(self.options["timeout_s"])
        self.client = _client(
            float(self.options["backoff_s"]),
            base_url=self.base_url,
            api_key=key or "unused",  # the SDK needs one; without a key no Authorization header is sent
            max_retries=int(self.options["max_retries"]),
            timeout=_sdk().Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)),
        )
        self._headers = {} if key else {"Authorization": _sdk().Omit()}
        if self.options["check_model"]:
            self._check_model()

    def _check_model(self) -> None:
        try:
            listing = self._call(
                "GET",
                "/models",
                lambda: self.client.with_options(max_retries=0).models.list(extra_headers=self._headers),
            )
        except EngineError as exc:
            raise EngineError(
                f"expert {self.spec.name!r}: the OpenAI-compatible server at {self.base_url} "
                f"did not answer GET /models ({exc}); start it, fix engine.options.base_url, "
                "or set engine.options.check_model=false"
            ) from exc
        served = [getattr(m, "id", None) for m in listing.data or []]
        if self.spec.path not in served:
            raise EngineError(
                f"expert {self.spec.name!r}: the server at {self.base_url} does not serve model "
                f"{self.spec.path!r}; it serves: {', '.join(map(str, served)) or '(none)'}"
            )

    def _unload(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    def weight_files(self) -> list[str]:
        """None here: the server holds the weights (nothing to read ahead)."""
        return []

    def _generate(self, requests: list[GenRequest]) -> list[GenOutput]:
        workers = max(1, min(int(self.options["max_concurrency"]), len(requests)))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self._complete, requests))

    def _complete(self, request: GenRequest) -> GenOutput:
        s = request.sampling
        reply = self._call(
            "POST",
            "/chat/completions",
            lambda: self.client.chat.completions.create(
                model=self.spec.path,
                messages=request.chat(),
                max_tokens=s.max_tokens,
                temperature=s.temperature,
                top_p=s.top_p,
                seed=s.seed,
                extra_body=self.kwargs or None,
                extra_headers=self._headers,
            ),
        )
        try:
            choice = reply.choices[0]
            usage = reply.usage
            return GenOutput(
                text=choice.message.content or "",
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                finish_reason=str(choice.finish_reason or ""),
            )
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise EngineError(
                f"expert {self.spec.name!r}: unexpected reply from {self.base_url}/chat/completions: "
                f"{_shown(reply)}"
            ) from exc

    def _call(self, method: str, route: str, send):
        """``send()`` through the SDK (which retries), its errors turned into EngineErrors naming the URL."""
        openai = _sdk()
        url = self.base_url + route
        try:
            return send()
        except openai.APIStatusError as exc:
            raise EngineError(
                f"{method} {url} answered {exc.status_code}: {exc.response.text[:300]}"
            ) from exc
        except openai.APITimeoutError as exc:
            raise EngineError(
                f"{method} {url} failed: timed out after {self.options['timeout_s']} s"
            ) from exc
        except openai.APIConnectionError as exc:
            raise EngineError(f"{method} {url} failed: {exc.__cause__ or exc}") from exc
        except openai.OpenAIError as exc:  # e.g. a reply that is not JSON
            raise EngineError(f"{method} {url} failed: {exc}") from exc


def _shown(reply) -> str:
    """The start of a reply, for an error message."""
    try:
        return json.dumps(reply.model_dump(), default=str)[:300]
    except Exception:
        return repr(reply)[:300]
