"""Request validation and response shapes of the OpenAI-compatible API (no server)."""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.method.runner import ReplySampling
from skillmoe_ray.serving.openai_api import (
    BadRequest,
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
    raw = json.dumps({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
                                   {"role": "assistant", "content": "?"}, {"role": "user", "content": "second"}]})
    assert parse_request(raw.encode(), 10_000, 3).question == "second"


@pytest.mark.parametrize("name, expected", [("symbolic-moe-k5", ("symbolic_moe", 5)), ("moa", ("moa", 3)),
                                            ("majority-vote", ("majority_vote", 3))])
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
        (json.dumps({"messages": [{"content": "x"}]}).encode(), "messages[0] must be an object with 'role' and 'content'"),
        (body(messages=[{"role": "user", "content": "  "}]), "the question (the last user message) is empty"),
        (body(model="gpt-4"), "unknown model 'gpt-4'; valid models: symbolic-moe"),
        (body(model="symbolic-moe-k99"), "unknown model"),
        (body(skillmoe={"route": True}), "unknown skillmoe option 'route'"),
        (body(skillmoe={"choices": ["only one"]}), "skillmoe.choices must be a list of 2 to 10"),
        (body(skillmoe={"answer_type": "essay"}), "answer_type must be auto, choice or math"),
        (body(skillmoe={"route_only": "false"}), "skillmoe.route_only must be true or false, got 'false'"),
        (body(messages=[{"role": "user", "content": [{"type": "text", "text": 7}]}]), "content part 0 of the last user message"),
        (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]), "only text parts"),
        (b"[" * 4000 + b"]" * 4000, "nested too deeply"),
    ],
)
def test_malformed_requests_are_rejected_with_a_message_naming_the_problem(raw, message):
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        parse_request(raw, 10_000, 3)


def test_an_oversized_body_is_rejected_before_parsing():
    with pytest.raises(BadRequest, match="request body is 20001 bytes; the limit is 20000"):
        parse_request(b"x" * 20_001, 20_000, 3)


def test_the_response_has_the_openai_shape_and_the_routing_details():
    job = parse_request(body(model="symbolic-moe-k2"), 10_000, 3)
    reply = completion_response(job, "The answer is \\boxed{4}", "stop", {"prompt_tokens": 10, "completion_tokens": 5},
                                {"experts": ["a", "b"]})
    assert reply["object"] == "chat.completion" and reply["model"] == "symbolic-moe-k2"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "The answer is \\boxed{4}"}
    assert reply["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert reply["skillmoe"] == {"experts": ["a", "b"]}


def test_sampling_fields_set_the_reply_generation_and_harmless_fields_are_ignored():
    job = parse_request(body(temperature=0.2, top_p=0.9, max_completion_tokens=40, seed=-3, user="u", n=1), 10_000, 3)
    assert job.sampling == ReplySampling(temperature=0.2, top_p=0.9, max_tokens=40, seed=-3)
    assert parse_request(body(max_tokens=12), 10_000, 3).sampling.max_tokens == 12
    assert parse_request(body(), 10_000, 3).sampling == ReplySampling()
    assert parse_request(body(tools=[], tool_choice="none", logprobs=False, response_format={"type": "text"}),
                         10_000, 3).sampling == ReplySampling()


@pytest.mark.parametrize(
    "fields, param, message",
    [
        ({"n": 3}, "n", "n must be 1"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "unsupported field 'tools'"),
        ({"tool_choice": "auto"}, "tool_choice", "unsupported field 'tool_choice'"),
        ({"logprobs": True}, "logprobs", "unsupported field 'logprobs'"),
        ({"response_format": {"type": "json_object"}}, "response_format", "only text replies"),
        ({"stop": ["\n"]}, "stop", "unsupported field 'stop'"),
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
        ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options", "include_usage must be true or false"),
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

    assert BASELINES == {"majority-vote": "majority_vote", "single": "single",
                         "self-consistency": "self_consistency", "task-level": "task_level",
                         "random": "random", "moa": "moa", "self-moa": "self_moa"}
