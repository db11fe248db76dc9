"""Faults under Serve, each on an application deployed for it (fake engine): overload, timeouts, failing and
dead experts, an unhealthy replica, a full cache disk."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.ray.serve_client import QUESTION, USER, ask, client, deploy, get, post

pytestmark = [pytest.mark.ray]


# sixteen slowed requests against a 4-request bound; test_openai_api.py holds the 503 error shape
@pytest.mark.slow
def test_overload_past_the_queue_bound_gets_503_and_the_service_recovers(ray_cluster, tmp_path):
    """Serve's max_ongoing_requests + max_queued_requests bound the answerer.

    The ingress answers 503 for the rest.
    """
    import openai

    url = deploy(
        tmp_path,
        [
            "serve.max_ongoing_requests=2",
            "serve.max_queued_requests=2",
            "serve.max_batch=2",
            "serve.window_ms=1000",
            "engine.options.delay_s=1.0",
        ],
        fake=True,
    )
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda i: post(url, ask(f"{QUESTION} (burst {i})"), timeout=120), range(16)))
    statuses = [status for status, _, _ in replies]
    assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}
    rejected = next(r for r in replies if r[0] == 503)
    assert int(rejected[2]["retry-after"]) >= 1 and "busy" in rejected[1]["error"]["message"]
    assert post(url, ask("After the burst: what is 3 + 4?"))[0] == 200
    stats = get(url, "/v1/stats")
    assert stats["rejected"] == statuses.count(503) and stats["largest_batch"] <= 2
    # A stream starts (role chunk) while the experts still work: each phase takes window + delay here.
    stream = client(url).chat.completions.create(
        model="symbolic-moe", stream=True, messages=[{"role": "user", "content": "Streamed: what is 5 + 6?"}]
    )
    start = time.monotonic()
    arrivals = [(time.monotonic() - start, chunk) for chunk in stream]
    assert arrivals[0][1].choices[0].delta.role == "assistant" and arrivals[-1][0] - arrivals[0][0] > 1.0
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        client(url).chat.completions.create(
            model="symbolic-moe", messages=USER, stream_options={"include_usage": True}
        )


@pytest.mark.slow  # waits out a timeout per route
def test_past_the_request_timeout_a_plain_request_gets_504_and_a_stream_an_error_event(
    ray_cluster, tmp_path
):
    import openai

    url = deploy(tmp_path, ["serve.request_timeout_s=1", "engine.options.delay_s=1.5"], fake=True)
    status, body, _ = post(url, ask(QUESTION))
    assert status == 504 and "no answer within 1 s" in body["error"]["message"]
    stream = client(url).chat.completions.create(model="symbolic-moe", messages=USER, stream=True)
    with pytest.raises(openai.APIError, match="no answer within 1 s"):
        list(stream)
    stats = get(url, "/v1/stats")
    assert stats["timeouts"] == 2 and stats["queue_depth"] == 0


def test_a_failing_expert_answers_502_for_its_requests_and_the_service_stays_up(
    ray_cluster, tmp_path
):
    import openai

    deploy(tmp_path, [], fake=True)  # healthy preparation fills the cache
    url = deploy(
        tmp_path,
        ["+engine.options.fail_models=[tiny-llama-a,tiny-qwen-b,tiny-mistral-c,tiny-llama-d]"],
        fake=True,
    )
    status, body, headers = post(url, ask(QUESTION))
    message = body["error"]["message"]
    assert status == 502 and "failed" in message and headers["x-request-id"] in message
    text = json.dumps(body)  # what the engine raised, and where, stays in the server's log
    assert "Traceback" not in text and ".py" not in text and "/" not in body["error"]["message"]
    assert "pid" not in text and "actor" not in text.lower() and "ip=" not in text
    assert body["error"]["code"] == "upstream_error"
    with pytest.raises(openai.APIStatusError) as failed:  # the SDK reads it as an error with a message
        client(url).chat.completions.create(model="symbolic-moe", messages=USER)
    assert failed.value.status_code == 502 and "answering failed" in failed.value.message
    # a browser's cross-site "simple" POST (text/plain) never reaches the answerer
    status, body, _ = post(url, json.dumps(ask(QUESTION)).encode(), headers={"Content-Type": "text/plain"})
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"
    assert get(url, "/healthz") == {"status": "ok"}  # one failure is not a broken replica
    status, body, _ = post(url, ask(QUESTION, route_only=True))
    assert status == 200


@pytest.mark.slow  # the batch pipeline's dead-actor test runs by default
def test_after_an_idle_resident_experts_actor_is_killed_later_requests_are_answered(
    ray_cluster, tmp_path
):
    """The dead actor leaves its slot and is recreated on next use; nothing answers 502 for it."""
    import time

    import psutil

    url = deploy(tmp_path, [], fake=True)
    assert post(url, ask(QUESTION))[0] == 200  # experts now resident or sleeping in the replica
    experts = [
        p
        for p in psutil.process_iter(["cmdline"])
        if (p.info["cmdline"] or [""])[0].startswith("ray::ExpertActor")
    ]
    assert experts
    for process in experts:  # as an OOM killer would
        process.kill()
    time.sleep(1)
    statuses = [post(url, ask(f"{QUESTION} Variant {i}."))[0] for i in range(4)]
    assert statuses == [200] * 4
    assert get(url, "/v1/stats")["failed"] == 0


@pytest.mark.slow  # the failing-expert test above runs by default
def test_a_replica_whose_requests_all_fail_reports_unhealthy(ray_cluster, tmp_path):
    deploy(tmp_path, [], fake=True)  # healthy preparation fills the cache
    url = deploy(
        tmp_path,
        [
            "+engine.options.fail_models=[tiny-llama-a,tiny-qwen-b,tiny-mistral-c,tiny-llama-d]",
            "serve.unhealthy_after=2",
        ],
        fake=True,
    )
    assert [post(url, ask(f"{QUESTION} ({i})"))[0] for i in range(2)] == [502, 502]
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(url + "/healthz", timeout=30)
    assert failed.value.code == 503 and "the last 2 requests all failed" in failed.value.read().decode()


def test_under_a_full_cache_disk_replies_are_still_200_counted_and_no_expert_loads_twice(
    ray_cluster, tmp_path
):
    from tests.conftest import make_full, unmount

    url = deploy(tmp_path, [], fake=True)  # prepared on a healthy cache; then the disk fills up
    make_full(tmp_path / "cache")
    try:
        status, body, _ = post(url, ask(QUESTION))
        stats = get(url, "/v1/stats")
    finally:
        unmount(tmp_path / "cache")
    assert status == 200 and body["choices"][0]["message"]["content"]
    assert stats["store_failures"] > 0 and stats["failed"] == 0
    assert stats["activations"] <= 6  # the fake pool's six models, each loaded at most once
