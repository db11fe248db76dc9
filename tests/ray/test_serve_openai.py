"""The OpenAI surface of the service as real clients use it (the official ``openai`` SDK and raw HTTP), on the
fake engine where orchestration is what is tested: streaming, seeds, stop, conversations, n, keys, errors."""

from __future__ import annotations

import functools
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.ray.serve_client import AUTH, KEY, QUESTION, USER, ask, client, deploy, get, post

pytestmark = [pytest.mark.ray]


@pytest.fixture(scope="module")
def fake_service(ray_cluster, tmp_path_factory):
    """The service on the fake engine, with an API key and n up to 2. The tests using it stand together:
    later tests redeploy the app."""
    overrides = [f"serve.api_keys=[{KEY}]", "serve.max_n=2"]
    return deploy(tmp_path_factory.mktemp("fake-serve"), overrides, fake=True)


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
