"""serve.topology=per_expert on one node: each pool model a Serve deployment of its own behind the same
router; the answers are those of the single topology for the same seeds, through the official openai client,
with the fake engine and with real tiny models (transformers)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.ray.serve_client import QUESTION, client, deploy, get

pytestmark = [pytest.mark.ray]

PER_EXPERT = ["serve.topology=per_expert"]
FAKE_MODELS = {"tiny-keyword", "tiny-aggregator", "tiny-llama-a", "tiny-qwen-b", "tiny-mistral-c",
               "tiny-llama-d"}


@pytest.fixture
def serve_app(ray_cluster):
    """Serve in the session's cluster, shut down after the test (whatever it deployed)."""
    from ray import serve

    yield serve
    serve.shutdown()


def answers(url: str, questions: list[str], workers: int = 8) -> list[tuple[str, list[str], str]]:
    """(reply, recruited experts, aggregator) of each question, asked concurrently with the openai client."""
    def ask(question: str):
        reply = client(url).chat.completions.create(
            model="symbolic-moe", messages=[{"role": "user", "content": question}], seed=7)
        details = reply.skillmoe
        return reply.choices[0].message.content, details["experts"], details["aggregator"]

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(ask, questions))


@pytest.mark.slow  # two deployments of the application, one per topology (about 100 s here)
def test_per_expert_answers_as_single_does_one_deployment_per_model(serve_app, tmp_path):
    questions = [f"{QUESTION} (variant {i})" for i in range(8)]
    url = deploy(tmp_path / "per_expert", PER_EXPERT, fake=True)
    # the preparation (profiles), not these answers: the single topology below generates them itself
    shutil.copytree(tmp_path / "per_expert" / "cache", tmp_path / "single" / "cache")
    per_expert = answers(url, questions)
    stats = get(url, "/v1/stats")
    deployments = stats["deployments"]
    assert set(deployments) <= FAKE_MODELS and {"tiny-keyword", "tiny-llama-a"} <= set(deployments)
    assert all(d["replicas"] == 1 and d["status"] == "HEALTHY" for d in deployments.values()), deployments
    assert all(d["failures"] == 0 and d["in_flight"] == 0 for d in deployments.values())
    # each micro-batch makes one call per model it needs, not one per request
    assert 0 < deployments["tiny-keyword"]["calls"] <= stats["batches"] < len(questions)
    health = get(url, "/healthz")
    assert health["status"] == "ok" and set(health["deployments"]) == set(deployments)
    statuses = serve_app.status().applications["skillmoe"].deployments
    assert {f"model-{name}" for name in deployments} <= set(statuses)

    url = deploy(tmp_path / "single", [], fake=True)
    assert answers(url, questions) == per_expert
    assert "deployments" not in get(url, "/v1/stats")
    assert "model-tiny-keyword" not in serve_app.status().applications["skillmoe"].deployments


@pytest.mark.engine
@pytest.mark.slow  # builds the demo's tiny models and loads them twice, once per topology
def test_per_expert_with_real_tiny_models_answers_as_single(serve_app, tmp_path):
    questions = [f"{QUESTION} (variant {i})" for i in range(4)]
    url = deploy(tmp_path / "per_expert", PER_EXPERT)
    shutil.copytree(tmp_path / "per_expert" / "cache", tmp_path / "single" / "cache")
    per_expert = answers(url, questions, workers=4)
    deployments = get(url, "/v1/stats")["deployments"]
    assert all(d["replicas"] == 1 and d["failures"] == 0 for d in deployments.values()), deployments
    url = deploy(tmp_path / "single", [])
    assert answers(url, questions, workers=4) == per_expert


# The keyword model scales between 1 and 2 replicas on its ongoing calls, with Serve's delays made short.
AUTOSCALED = [
    "+serve.deployments.tiny-keyword.autoscaling_config={min_replicas: 1, max_replicas: 2, "
    "target_ongoing_requests: 1, upscale_delay_s: 1, downscale_delay_s: 4, metrics_interval_s: 0.5, "
    "look_back_period_s: 2}",
    "engine.options.delay_s=0.5",
]


def replicas(url: str, model: str) -> int:
    return get(url, "/v1/stats")["deployments"][model]["replicas"]


def wait_for_replicas(url: str, model: str, wanted: int, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while (seen := replicas(url, model)) != wanted and time.monotonic() < deadline:
        time.sleep(0.5)
    return seen


@pytest.mark.slow  # waits for Serve to scale up and down
def test_an_autoscaled_model_goes_to_two_replicas_under_load_and_back_to_one(serve_app, tmp_path):
    from skillmoe_ray.engines.base import GenRequest, Sampling

    url = deploy(tmp_path, [*PER_EXPERT, *AUTOSCALED], fake=True)
    assert replicas(url, "tiny-keyword") == 1
    keyword = serve_app.get_deployment_handle("model-tiny-keyword", app_name="skillmoe")
    request = GenRequest.make([{"role": "user", "content": "Skills: load"}], Sampling(4), "load")
    stop = threading.Event()

    def keep_busy():  # eight calls in flight at any moment: the model is busy
        while not stop.is_set():
            for call in [keyword.generate.remote([request]) for _ in range(8)]:
                call.result()

    loader = threading.Thread(target=keep_busy, daemon=True)
    loader.start()
    try:
        assert wait_for_replicas(url, "tiny-keyword", 2) == 2
        assert answers(url, [f"{QUESTION} (while scaled {i})" for i in range(4)], workers=4)
    finally:
        stop.set()
        loader.join(timeout=60)
    assert wait_for_replicas(url, "tiny-keyword", 1) == 1
    deployments = get(url, "/v1/stats")["deployments"]
    assert {d["replicas"] for m, d in deployments.items() if m != "tiny-keyword"} == {1}


@pytest.mark.slow  # `serve run` starts a Ray of its own and prepares the service in it
def test_serve_run_of_the_per_expert_job_config_serves_each_model_as_a_deployment(tmp_path):
    """``serve run jobs/serve_per_expert.yaml`` as the README documents it (``--address local``), its
    overrides extended with the fake engine, a free port and a cache here."""
    import yaml

    from tests.conftest import REPO, TEST_CONF
    from tests.ray.serve_client import free_port

    config = yaml.safe_load((REPO / "jobs" / "serve_per_expert.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    app = config["applications"][0]
    assert "serve.topology=per_expert" in app["args"]["overrides"]
    app["args"]["overrides"] += ["engine=fake", "pool=fake", "demo.build_models=false",
                                 f"cache_dir={tmp_path / 'cache'}", f"hydra.searchpath=[file://{TEST_CONF}]"]
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    serve_cli = str(Path(sys.executable).parent / "serve")
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen([serve_cli, "run", "--address", "local", str(tmp_path / "serve.yaml")],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "RAY_ADDRESS": ""})
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, proc, tmp_path / "serve.log")
            reply = client(url).chat.completions.create(
                model="symbolic-moe", messages=[{"role": "user", "content": QUESTION}])
            assert reply.choices[0].message.content and len(reply.skillmoe["experts"]) == 3
            deployments = get(url, "/v1/stats")["deployments"]
            assert set(deployments) <= FAKE_MODELS and all(d["replicas"] == 1 for d in deployments.values())
        finally:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C: serve run shuts the application and its Ray down
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_healthy(url: str, proc: subprocess.Popen, log, timeout_s: float = 400) -> None:
    deadline = time.monotonic() + timeout_s
    while not healthy(url) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(2)
    assert healthy(url), log.read_text()[-3000:]

def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False
