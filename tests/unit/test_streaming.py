"""The streamed reply's framing: OpenAI chat.completion.chunk objects as server-sent events (no server)."""

from __future__ import annotations

import json

import pytest

from skillmoe_ray.serving.openai_api import parse_request
from skillmoe_ray.serving.streaming import DONE, error_events, reply_events, role_event


def job(**fields):
    raw = {"model": "symbolic-moe-k2", "messages": [{"role": "user", "content": "What is 2+2?"}],
           "stream": True, **fields}
    return parse_request(json.dumps(raw).encode(), 10_000, 3)


def payloads(events: list[str]) -> list[dict]:
    assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
    return [json.loads(e[6:]) for e in events if e != DONE]


USAGE = {"prompt_tokens": 30, "completion_tokens": 12}


@pytest.mark.parametrize("include_usage", [False, True])
def test_the_reply_streams_role_content_finish_and_done_with_usage_and_routing_last(include_usage):
    j = job(stream_options={"include_usage": include_usage})
    reply = [("The answer is \\boxed{4}", "stop")]
    events = [role_event(j, 1), *reply_events(j, 1, reply, USAGE, {"experts": ["a", "b"]})]
    assert events[-1] == DONE
    chunks = payloads(events)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and {c["id"] for c in chunks} == {
        j.request_id
    }
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        == "The answer is \\boxed{4}"
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, None, "stop"]
    last = chunks[-1]
    assert last["usage"] == {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
    assert last["skillmoe"] == {"experts": ["a", "b"]}
    if include_usage:  # the spec's usage chunk: no choices; every other chunk says usage null
        assert last["choices"] == [] and all(c["usage"] is None for c in chunks[:-1])
    else:
        assert all("usage" not in c for c in chunks[:-1])


def test_a_route_only_reply_has_no_content_chunk():
    j = job(skillmoe={"route_only": True})
    chunks = payloads(reply_events(j, 1, [("", "route_only")], {}, {"experts": ["a"]}))
    assert len(chunks) == 1 and chunks[0]["choices"][0]["finish_reason"] == "route_only"


def test_a_failure_after_the_stream_began_is_an_error_event_then_done():
    events = error_events("answering failed", 502, "req-1")
    assert events[-1] == DONE and payloads(events) == [
        {
            "error": {
                "message": "answering failed (request id req-1)",
                "type": "upstream_error",
                "param": None,
                "code": "upstream_error",
            }
        }
    ]


def test_n_replies_stream_as_choices_with_their_index():
    raw = {"model": "symbolic-moe", "messages": [{"role": "user", "content": "q"}], "stream": True, "n": 2}
    j = parse_request(json.dumps(raw).encode(), 10_000, 3, max_n=2)
    chunks = payloads([role_event(j, 1), *reply_events(j, 1, [("a", "stop"), ("b", "length")], USAGE, {})])
    assert [c["index"] for c in chunks[0]["choices"]] == [0, 1]
    texts = {c["choices"][0]["index"]: c["choices"][0]["delta"]["content"] for c in chunks[1:3]}
    assert texts == {0: "a", 1: "b"}
    assert [(c["index"], c["finish_reason"]) for c in chunks[-1]["choices"]] == [(0, "stop"), (1, "length")]
