"""Request validation and response shapes of the OpenAI-compatible API (no server)."""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.method.runner import ReplySampling
from skillmoe_ray.serving.openai_api import (
    BadRequest,
    apply_stop,
    completion_response,
    model_names,
    parse_request,
    resolve_model,
)


def body(**fields) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "What is 2+2?"}], **fields}).encode()


def test_a_valid_request_becomes_a_job_with_the_default_method():
    job = parse_request(body(), 10_000, default_k=3)
    assert (job.method, job.k, job.question, job.route_only) == ("symbolic_moe", 3, "What is 2+2?", False)
    assert job.request_id.startswith("chatcmpl-")


def test_the_question_is_the_last_user_message():
    raw = json.dumps(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "?"},
                {"role": "user", "content": "second"},
            ]
        }
    )
    assert parse_request(raw.encode(), 10_000, 3).question == "second"


@pytest.mark.parametrize(
    "name, expected",
    [("symbolic-moe-k5", ("symbolic_moe", 5)), ("moa", ("moa", 3)), ("majority-vote", ("majority_vote", 3)),
     ("avengers", ("avengers", 3)), ("knn", ("knn", 3))],
)
def test_model_names_select_method_and_k(name, expected):
    assert resolve_model(name, 3) == expected
    assert name in model_names(3)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"model": "symbolic-moe"}).encode(), "'messages' is required"),
        (json.dumps({"messages": [{"role": "system", "content": "x"}]}).encode(), "no user message"),
        (
            json.dumps({"messages": [{"content": "x"}]}).encode(),
            "messages[0] must be an object with 'role' and 'content'",
        ),
        (body(messages=[{"role": "user", "content": "  "}]), "the question (the last user message) is empty"),
        (body(model="gpt-4"), "unknown model 'gpt-4'; valid models: symbolic-moe"),
        (body(model="symbolic-moe-k99"), "unknown model"),
        (body(skillmoe={"route": True}), "unknown skillmoe option 'route'"),
        (body(skillmoe={"choices": ["only one"]}), "skillmoe.choices must be a list of 2 to 10"),
        (body(skillmoe={"answer_type": "essay"}), "answer_type must be auto, choice or math"),
        (body(skillmoe={"route_only": "false"}), "skillmoe.route_only must be true or false, got 'false'"),
        (
            body(messages=[{"role": "user", "content": [{"type": "text", "text": 7}]}]),
            "content part 0 of messages[0]",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            "only text parts",
        ),
        (b"[" * 4000 + b"]" * 4000, "nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", "a JSON number over 4300 digits"),
        (body(messages=[{"role": "tool", "content": "x"}, {"role": "user", "content": "q"}]), "role 'tool'"),
        (
            body(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]),
            "the last message must be the user's question",
        ),
        (body(messages=[{"role": "user", "content": "q", "tool_call_id": "x"}]), "messages[0].tool_call_id"),
    ],
)
def test_malformed_requests_are_rejected_with_a_message_naming_the_problem(raw, message):
    with pytest.raises(
        BadRequest,
        match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]"),
    ):
        parse_request(raw, 10_000, 3)


def test_an_oversized_body_is_rejected_before_parsing():
    with pytest.raises(BadRequest, match="request body is 20001 bytes; the limit is 20000"):
        parse_request(b"x" * 20_001, 20_000, 3)


def test_the_response_has_the_openai_shape_and_the_routing_details():
    job = parse_request(body(model="symbolic-moe-k2"), 10_000, 3)
    reply = completion_response(
        job,
        [("The answer is \\boxed{4}", "stop")],
        {"prompt_tokens": 10, "completion_tokens": 5},
        {"experts": ["a", "b"]},
    )
    assert reply["object"] == "chat.completion" and reply["model"] == "symbolic-moe-k2"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "The answer is \\boxed{4}"}
    assert reply["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert reply["skillmoe"] == {"experts": ["a", "b"]}


def test_sampling_fields_set_the_reply_generation_and_harmless_fields_are_ignored():
    job = parse_request(
        body(temperature=0.2, top_p=0.9, max_completion_tokens=40, seed=-3, user="u", n=1), 10_000, 3
    )
    assert job.sampling == ReplySampling(temperature=0.2, top_p=0.9, max_tokens=40, seed=-3)
    assert parse_request(body(max_tokens=12), 10_000, 3).sampling.max_tokens == 12
    assert parse_request(body(), 10_000, 3).sampling == ReplySampling()
    assert (
        parse_request(
            body(tools=[], tool_choice="none", logprobs=False, response_format={"type": "text"}), 10_000, 3
        ).sampling
        == ReplySampling()
    )


@pytest.mark.parametrize(
    "fields, param, message",
    [
        ({"n": 3}, "n", r"'n' must be at most 1 on this service \(serve.max_n\), got 3"),
        ({"n": 0}, "n", "'n' must be an integer >= 1"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "'stop' must be a string or a list of up to 4 strings"),
        ({"stop": 7}, "stop", "'stop' must be a string"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "unsupported field 'tools'"),
        ({"tool_choice": "auto"}, "tool_choice", "unsupported field 'tool_choice'"),
        ({"logprobs": True}, "logprobs", "unsupported field 'logprobs'"),
        ({"response_format": {"type": "json_object"}}, "response_format", "only text replies"),
        ({"presence_penalty": 0.5}, "presence_penalty", "penalties are not supported"),
        ({"frobnicate": 1}, "frobnicate", "unrecognized request field 'frobnicate'"),
        ({"temperature": 3}, "temperature", r"'temperature' must be a number in \[0, 2\], got 3"),
        ({"temperature": "hot"}, "temperature", "'temperature' must be a number"),
        ({"top_p": 0}, "top_p", r"'top_p' must be a number in \(0, 1\]"),
        ({"max_tokens": 0}, "max_tokens", "'max_tokens' must be an integer >= 1"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens", "differ"),
        ({"seed": 1.5}, "seed", "'seed' must be an integer"),
        ({"stream": "yes"}, "stream", "'stream' must be true or false"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when 'stream' is true"),
        (
            {"stream": True, "stream_options": {"include_usage": 1}},
            "stream_options",
            "include_usage must be true or false",
        ),
    ],
)
def test_fields_the_service_cannot_honour_are_refused_naming_the_field(fields, param, message):
    with pytest.raises(BadRequest, match=message) as refused:
        parse_request(body(**fields), 10_000, 3)
    assert refused.value.param == param


def test_stream_options_are_read():
    job = parse_request(body(stream=True, stream_options={"include_usage": True}), 10_000, 3)
    assert job.stream and job.include_usage
    assert not parse_request(body(stream=True), 10_000, 3).include_usage


def test_the_baseline_model_names_are_the_servable_methods_of_the_registry():
    from skillmoe_ray.serving.openai_api import BASELINES

    assert BASELINES == {
        "majority-vote": "majority_vote",
        "single": "single",
        "self-consistency": "self_consistency",
        "task-level": "task_level",
        "random": "random",
        "moa": "moa",
        "self-moa": "self_moa",
        "avengers": "avengers",
        "knn": "knn",
    }


def test_a_conversation_keeps_its_turns_as_the_context_and_skills_read_the_last_user_message():
    raw = {
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4", "name": "bot"},
            {"role": "user", "content": "And plus 3?"},
        ]
    }
    job = parse_request(json.dumps(raw).encode(), 10_000, 3)
    assert job.question == "And plus 3?"
    transcript = "System: Answer in French.\n\nUser: What is 2+2?\n\nAssistant: 4\n\nUser: And plus 3?"
    assert job.prompt == transcript
    assert parse_request(body(), 10_000, 3).prompt == "What is 2+2?"  # one message: the question as it is


def test_stop_and_n_are_read_and_stop_cuts_as_openai_does():
    job = parse_request(body(stop="\n", n=2), 10_000, 3, max_n=2)
    assert (job.stop, job.n) == (("\n",), 2)
    assert parse_request(body(stop=["Q:", "", "\n\n"]), 10_000, 3).stop == ("Q:", "\n\n")
    assert apply_stop("The answer is 4.\nQ: next", ("Q:", "\n")) == ("The answer is 4.", True)
    assert apply_stop("no stop here", ("Q:",)) == ("no stop here", False)
    assert apply_stop("Q: at once", ("Q:",)) == ("", True)


def test_a_text_completion_request_is_a_job_and_its_legacy_fields_are_refused():
    from skillmoe_ray.serving.completions import parse_completion, text_completion_response

    job = parse_completion(
        json.dumps(
            {
                "model": "majority-vote",
                "prompt": "What is 2+2?",
                "stop": ["\n"],
                "max_tokens": 5,
                "echo": False,
            }
        ).encode(),
        10_000,
        3,
    )
    assert (job.question, job.method) == ("What is 2+2?", "majority_vote")
    assert (job.stop, job.sampling.max_tokens) == (("\n",), 5)
    reply = text_completion_response(job, [("4", "stop")], {"prompt_tokens": 3, "completion_tokens": 1}, {})
    assert reply["object"] == "text_completion" and reply["choices"][0]["text"] == "4"
    refused_fields = [
        ({"echo": True}, "echo"),
        ({"prompt": [1, 2]}, "prompt"),
        ({"stream": True}, "stream"),
        ({"best_of": 2}, "best_of"),
        ({"messages": []}, "messages"),
    ]
    for fields, param in refused_fields:
        with pytest.raises(BadRequest) as refused:
            parse_completion(json.dumps({"prompt": "q", **fields}).encode(), 10_000, 3)
        assert refused.value.param == param


def test_error_objects_have_a_string_code_and_the_request_id():
    from skillmoe_ray.serving.errors import error_body, public_message

    for status in (400, 401, 404, 405, 415, 500, 502, 503, 504):
        error = error_body("boom", status, request_id="req-1")["error"]
        assert isinstance(error["code"], str) and error["type"]
        assert error["message"] == "boom (request id req-1)"
    leaked = 'Traceback (most recent call last):\n  File "/x/engine.py", pid=123, ip=10.0.0.1, actor_id=ab12'
    public = public_message(502, leaked)
    assert public.startswith("answering failed") and "pid" not in public


def test_the_gate_wants_a_listed_bearer_key_and_a_json_body():
    from skillmoe_ray.serving.errors import Refused, api_keys, check_json, check_key

    keys = api_keys(["k1"], {"SKILLMOE_API_KEYS": "k2, k3"})
    assert keys == {"k1", "k2", "k3"} and api_keys([], {}) == frozenset()
    check_key(frozenset(), None)  # no key set: open
    check_key(keys, "Bearer k3")
    for header in (None, "Bearer wrong", "Basic k1", "Bearer "):
        with pytest.raises(Refused) as refused:
            check_key(keys, header)
        assert refused.value.status == 401
    check_json("application/json; charset=utf-8")
    for kind in ("text/plain", None, "application/x-www-form-urlencoded"):
        with pytest.raises(Refused) as refused:
            check_json(kind)
        assert refused.value.status == 415
