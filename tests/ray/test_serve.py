"""The Ray Serve application over real HTTP on loopback with real tiny models (transformers engine) on the
CPU: the answer's shape, concurrency, bad requests, the routes, the warm-up and usage.
The OpenAI surface on the fake engine is in test_serve_openai.py, faults in test_serve_faults.py."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.ray.serve_client import QUESTION, USER, ask, client, deploy, get, post

pytestmark = [pytest.mark.ray, pytest.mark.engine]


@pytest.fixture(scope="module")
def service(ray_cluster, tmp_path_factory):
    from ray import serve

    url = deploy(tmp_path_factory.mktemp("serve"), [])
    yield url
    serve.shutdown()


def test_answers_a_question_in_the_openai_shape_with_routing_details(service):
    status, body, _ = post(service, ask(QUESTION))
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert isinstance(body["choices"][0]["message"]["content"],
                      str) and body["choices"][0]["message"]["content"]
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        > 0
    )
    details = body["skillmoe"]
    assert isinstance(details["skills"], list) and len(details["experts"]) == 3
    assert details["aggregator"] == "tiny-aggregator"
    assert sum(details["probabilities"].values()) == pytest.approx(1)


def test_32_concurrent_requests_all_succeed_with_fewer_engine_calls_than_requests_times_k(service):
    before = get(service, "/v1/stats")
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda i: post(service, ask(f"{QUESTION} (variant {i})")), range(32)))
    assert [status for status, _, _ in answers] == [200] * 32
    after = get(service, "/v1/stats")
    calls = after["engine_generate_calls"] - before["engine_generate_calls"]
    assert calls < 32 * 3, calls
    assert after["largest_batch"] > 1


@pytest.mark.parametrize("case", ["malformed_json", "missing_messages", "empty_question", "oversized"])
def test_bad_requests_get_400_with_a_clear_message_and_the_service_goes_on(service, case):
    body, expected = {
        "malformed_json": (b'{"messages": [', "not valid JSON"),
        "missing_messages": (json.dumps({"model": "symbolic-moe"}).encode(), "'messages' is required"),
        "empty_question": (json.dumps(ask("   ")).encode(), "the question (the last user message) is empty"),
        "oversized": (json.dumps(ask("x" * 2_000_000)).encode(), "the limit is 1000000"),
    }[case]
    status, reply, _ = post(service, body)
    assert status == 400 and expected in reply["error"]["message"]
    assert post(service, ask("What is 2 + 2?"))[0] == 200


def test_models_health_stats_and_route_only(service):
    ids = [m["id"] for m in get(service, "/v1/models")["data"]]
    assert {"symbolic-moe", "symbolic-moe-k5", "majority-vote", "moa"} <= set(ids)
    assert get(service, "/healthz") == {"status": "ok"}
    status, body, _ = post(service, ask(QUESTION, "symbolic-moe-k2", route_only=True))
    assert status == 200 and body["choices"][0]["finish_reason"] == "route_only"
    assert len(body["skillmoe"]["experts"]) == 2 and "predicted_cost" in body["skillmoe"]
    stats = get(service, "/v1/stats")
    assert {"requests", "engine_generate_calls", "activations", "queue_depth", "resident"} <= set(stats)


def test_the_warm_up_leaves_the_pool_resident_and_a_new_question_loads_nothing(service):
    """The demo's models fit the machine's default budget: all were loaded before the service was ready."""
    before = get(service, "/v1/stats")
    assert (
        "tiny-keyword" in before["resident"] and len(before["resident"]) >= 5
    )  # keyword, aggregator, 4 experts
    assert before["activations"] >= len(before["resident"])
    assert post(service, ask("Warm: how many sides has a hexagon? Think about geometry."))[0] == 200
    after = get(service, "/v1/stats")
    assert after["activations"] == before["activations"] and set(after["resident"]) == set(before["resident"])


def test_usage_of_a_5_token_reply_is_that_replys_tokens(service):
    """usage as OpenAI defines it: the reply's own generation (real tiny models honour max_tokens)."""
    reply = client(service).chat.completions.create(model="symbolic-moe", messages=USER, max_tokens=5)
    assert 0 < reply.usage.completion_tokens <= 5
    stages = reply.skillmoe["usage"]
    assert stages["experts"]["completion_tokens"] > 5 and stages["keywords"]["completion_tokens"] > 0
    assert reply.usage.completion_tokens == stages["aggregator"]["completion_tokens"]
