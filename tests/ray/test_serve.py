"""The Ray Serve application over real HTTP on loopback: tiny models (transformers engine) on the CPU, the
fake engine where orchestration is what is tested, and the official ``openai`` client as a user's program."""

from __future__ import annotations

import functools
import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.engine, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Serve keeps the HTTP proxy of its first start: redeployments in this module reuse the port.
PORT = free_port()
# The API key of the fake service (sent by every request here; a service without keys ignores it).
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def post(url: str, body: bytes | dict, timeout: float = 300, headers: dict | None = None,
         path: str = "/v1/chat/completions") -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of a POST (to /v1/chat/completions unless ``path`` says otherwise)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    request = urllib.request.Request(f"{url}{path}", data, {k: v for k, v in sent.items() if v is not None})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(f"{url}{path}", headers=AUTH), timeout=30) as r:
        return json.loads(r.read())


def ask(question: str, model: str = "symbolic-moe", **skillmoe) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": question}]}
    return {**body, "skillmoe": skillmoe} if skillmoe else body


def deploy(tmp_path, overrides: list[str], fake: bool = False) -> str:
    """Prepare and deploy the service; returns its base URL."""
    from skillmoe_ray.preflight import load_checked
    from skillmoe_ray_actors.cluster import on_driver
    from skillmoe_ray_actors.serve_app import deploy as serve_deploy
    from tests.conftest import FAKE_DEMO, compose_tree

    port = PORT
    base = FAKE_DEMO if fake else ["+experiment=demo", "engine=hf"]
    tree = compose_tree([*base, "mode=serve", f"cache_dir={tmp_path / 'cache'}", f"serve.port={port}",
                         *overrides])
    cfg, val, _ = load_checked(tree, str(tmp_path / "run"))
    serve_deploy(cfg, on_driver(cfg, "prepare", val), blocking=False)
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def service(ray_cluster, tmp_path_factory):
    from ray import serve

    url = deploy(tmp_path_factory.mktemp("serve"), [])
    yield url
    serve.shutdown()


QUESTION = "A fair die is rolled twice. What is the probability that the sum is a prime number?"


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


@pytest.fixture(scope="module")
def fake_service(ray_cluster, tmp_path_factory):
    """The service on the fake engine, with an API key and n up to 2. The tests using it stand together:
    later tests redeploy the app."""
    overrides = [f"serve.api_keys=[{KEY}]", "serve.max_n=2"]
    return deploy(tmp_path_factory.mktemp("fake-serve"), overrides, fake=True)


def client(url: str, key: str = KEY):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


USER = [{"role": "user", "content": QUESTION}]


def test_the_openai_client_gets_a_plain_completion_with_usage_and_routing_details(fake_service):
    reply = client(fake_service).chat.completions.create(
        model="symbolic-moe", messages=USER, seed=11, temperature=0.3, max_tokens=64, user="someone"
    )
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content and reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    assert len(reply.skillmoe["experts"]) == 3 and reply.skillmoe["aggregator"]


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_streamed_completion_concatenates_to_the_plain_answer_for_the_same_seed(
    fake_service, include_usage
):
    api = client(fake_service)
    question = [{"role": "user", "content": f"{QUESTION} (stream, usage chunk: {include_usage})"}]
    plain = api.chat.completions.create(model="symbolic-moe", messages=question, seed=5, temperature=0.9)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        api.chat.completions.create(
            model="symbolic-moe", messages=question, seed=5, temperature=0.9, stream=True, **options
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant" and len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    last = chunks[-1]
    assert (last.choices == []) is include_usage  # the spec's usage chunk has no choices
    assert last.usage.total_tokens == plain.usage.total_tokens > 0
    assert last.skillmoe["experts"] == plain.skillmoe["experts"]
    assert all(c.usage is None for c in chunks[:-1])


def test_the_seed_reaches_the_aggregator(fake_service):
    api = client(fake_service)
    question = [{"role": "user", "content": "What is 17 * 3 - 4? Give the number."}]
    answers = {
        api.chat.completions.create(model="symbolic-moe", messages=question, seed=seed)
        .choices[0]
        .message.content
        for seed in range(5)
    }
    assert len(answers) > 1  # the same experts' answers, aggregated with five seeds
    again = (
        api.chat.completions.create(model="symbolic-moe", messages=question, seed=3)
        .choices[0]
        .message.content
    )
    assert again in answers


@pytest.mark.parametrize(
    "field, value",
    [
        ("n", 3),
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("logprobs", True),
        ("response_format", {"type": "json_object"}),
    ],
)
def test_an_unsupported_field_gets_a_400_naming_it_and_is_counted(fake_service, field, value):
    import openai

    before = get(fake_service, "/v1/stats")["bad_requests"]
    with pytest.raises(openai.BadRequestError) as refused:
        client(fake_service).chat.completions.create(model="symbolic-moe", messages=USER, **{field: value})
    assert f"'{field}'" in refused.value.message and refused.value.body["param"] == field
    assert get(fake_service, "/v1/stats")["bad_requests"] == before + 1


def test_a_raw_stream_is_server_sent_events_ending_in_done(fake_service):
    body = json.dumps({"messages": USER, "stream": True, "seed": 1}).encode()
    request = urllib.request.Request(
        f"{fake_service}/v1/chat/completions", body, {"Content-Type": "application/json", **AUTH}
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [e for e in r.read().decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_stop_cuts_the_reply_plain_and_streamed_as_openai_does(fake_service):
    api = client(fake_service)
    question = [{"role": "user", "content": f"{QUESTION} (stop)"}]
    ask_it = functools.partial(api.chat.completions.create, model="symbolic-moe", messages=question, seed=2)
    full = ask_it().choices[0].message.content
    stop = full.split()[2]  # a word inside the reply
    cut = ask_it(stop=[stop, "never there"]).choices[0]
    assert cut.message.content == full[: full.index(stop)] and cut.finish_reason == "stop"
    chunks = list(ask_it(stop=stop, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full[: full.index(stop)]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_a_system_message_and_earlier_turns_reach_the_experts_and_skills_come_from_the_last_turn(
    fake_service,
):
    """The documented rule: skills from the last user message; the experts and the aggregator read the
    conversation above it (the fake engine's answer is a hash of what it reads)."""
    api = client(fake_service)
    last = {"role": "user", "content": "And plus 3?"}
    alone = api.chat.completions.create(model="symbolic-moe", messages=[last], seed=4)
    system = api.chat.completions.create(
        model="symbolic-moe", seed=4, messages=[{"role": "system", "content": "Answer in French."}, last]
    )
    turns = api.chat.completions.create(
        model="symbolic-moe",
        seed=4,
        messages=[{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}, last],
    )
    assert alone.skillmoe["skills"] == system.skillmoe["skills"] == turns.skillmoe["skills"]
    for talk in (system, turns):
        assert talk.usage.prompt_tokens > alone.usage.prompt_tokens  # the aggregator read the conversation
        experts = [r.skillmoe["usage"]["experts"]["prompt_tokens"] for r in (talk, alone)]
        assert experts[0] > experts[1]
    assert (
        len(
            {
                alone.choices[0].message.content,
                system.choices[0].message.content,
                turns.choices[0].message.content,
            }
        )
        > 1
    )


def test_n_replies_models_retrieve_and_text_completions(fake_service):
    import openai

    api = client(fake_service)
    two = api.chat.completions.create(model="symbolic-moe", messages=USER, n=2, seed=8)
    assert [c.index for c in two.choices] == [0, 1] and all(c.message.content for c in two.choices)
    one = api.chat.completions.create(model="symbolic-moe", messages=USER, seed=8)
    assert two.choices[0].message.content == one.choices[0].message.content
    assert two.skillmoe["usage"]["experts"] == one.skillmoe["usage"]["experts"]  # one set of experts' answers
    aggregations = [r.skillmoe["usage"]["aggregator"]["prompt_tokens"] for r in (two, one)]
    assert aggregations[0] == 2 * aggregations[1]
    model = api.models.retrieve("symbolic-moe-k2")
    assert model.id == "symbolic-moe-k2" and isinstance(model.created, int) and model.created > 0
    assert all(isinstance(m.created, int) for m in api.models.list().data)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        api.models.retrieve("gpt-4")
    text = api.completions.create(model="symbolic-moe", prompt=QUESTION, max_tokens=64, stop=["never there"])
    assert text.object == "text_completion" and text.choices[0].text
    assert text.choices[0].finish_reason == "stop"
    assert text.usage.total_tokens > 0 and len(text.skillmoe["experts"]) == 3


def test_keys_json_bodies_and_openai_error_objects_on_every_status(fake_service):
    import openai

    with pytest.raises(openai.AuthenticationError):
        client(fake_service, key="wrong").chat.completions.create(model="symbolic-moe", messages=USER)
    status, body, headers = post(fake_service, ask(QUESTION), headers={"Authorization": None})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert headers["www-authenticate"] == "Bearer"
    with urllib.request.urlopen(f"{fake_service}/healthz", timeout=30) as r:  # open without a key
        assert json.loads(r.read()) == {"status": "ok"} and "access-control-allow-origin" not in r.headers
    api = client(fake_service)
    calls = {  # status -> a call the SDK makes that gets it
        400: lambda: api.chat.completions.create(model="symbolic-moe", messages=USER, logprobs=True),
        401: lambda: client(fake_service, key="wrong").models.list(),
        404: lambda: api.get("/no/such/route", cast_to=object),
        405: lambda: api.get("/chat/completions", cast_to=object),
        415: lambda: api.post(
            "/chat/completions",
            cast_to=object,
            body={"messages": USER},
            options={"headers": {"Content-Type": "text/plain"}},
        ),
    }
    for status, call in calls.items():
        with pytest.raises(openai.APIStatusError) as failed:
            call()
        error = failed.value.body
        assert failed.value.status_code == status and failed.value.message
        assert "request id req-" in error["message"]
        assert set(error) == {"message", "type", "param", "code"} and isinstance(error["code"], str)
    status, body, _ = post(fake_service, b'{"messages": [], "n": ' + b"9" * 4301 + b"}")
    assert status == 400 and "over 4300 digits" in body["error"]["message"]


def test_a_lone_surrogate_request_among_normal_ones_gets_400_naming_the_field_and_they_get_200(fake_service):
    questions = [f"{QUESTION} (variant {i})" for i in range(4)] + ["What is 2 + 2? \ud800"]
    with ThreadPoolExecutor(len(questions)) as pool:
        replies = list(pool.map(lambda q: post(fake_service, ask(q)), questions))
    assert [status for status, _, _ in replies] == [200, 200, 200, 200, 400]
    error = replies[-1][1]["error"]
    assert error["param"] == "messages" and "messages[0].content" in error["message"]


def test_overload_past_the_queue_bound_gets_503_and_the_service_recovers(ray_cluster, tmp_path, service):
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


def test_past_the_request_timeout_a_plain_request_gets_504_and_a_stream_an_error_event(
    ray_cluster, tmp_path, service
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
    ray_cluster, tmp_path, service
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


def test_after_an_idle_resident_experts_actor_is_killed_later_requests_are_answered(
    ray_cluster, tmp_path, service
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


def test_a_replica_whose_requests_all_fail_reports_unhealthy(ray_cluster, tmp_path, service):
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
    ray_cluster, tmp_path, service
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
