"""``/v1/completions``: a prompt string answered by the same pipeline as a chat question.

The prompt is the question (skills are inferred from it; the experts and the aggregator answer it); the
reply is a ``text_completion`` object. The fields are the chat endpoint's where the spec shares them
(``model``, ``n``, ``stop``, ``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``skillmoe``); those of
the legacy API the service cannot honour (``echo``, ``suffix``, ``best_of``, ``logprobs``, a list of
prompts or token ids, ``stream``) are refused with a 400 naming the field.
"""

from __future__ import annotations

import time

from skillmoe_ray.serving.openai_api import (
    REFUSED,
    BadRequest,
    Job,
    check_fields,
    load_body,
    make_job,
    usage_body,
)

HONOURED = ("model", "prompt", "skillmoe", "n", "temperature", "top_p", "max_tokens", "seed", "stop")
# The legacy fields the service cannot honour -> (the values that ask for nothing, why they are refused).
TEXT_REFUSED = {
    **{k: REFUSED[k] for k in ("frequency_penalty", "presence_penalty", "logit_bias")},
    "echo": ((None, False), "echoing the prompt is not supported"),
    "suffix": ((None, ""), "suffixes (insertion) are not supported"),
    "best_of": ((None, 1), "best_of is not supported; n replies are n aggregations"),
    "logprobs": ((None, 0), "log probabilities are not returned"),
    "stream": ((None, False), "streamed text completions are not supported (stream /v1/chat/completions)"),
    "stream_options": ((None,), "streamed text completions are not supported (stream /v1/chat/completions)"),
}


def parse_completion(body: bytes, max_bytes: int, default_k: int, max_n: int = 1) -> Job:
    """Validate a /v1/completions body into a Job, or raise BadRequest naming the problem."""
    data = load_body(body, max_bytes)
    check_fields(data, HONOURED, TEXT_REFUSED)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string (one prompt per request; token ids are not supported)",
                         "prompt")
    if not prompt.strip():
        raise BadRequest("'prompt' is empty", "prompt")
    return make_job(data, "cmpl", prompt.strip(), default_k, max_n)


def text_completion_response(job: Job, replies: list[tuple[str, str]], usage: dict, skillmoe: dict) -> dict:
    """An OpenAI text_completion object, one choice per (text, finish_reason)."""
    return {
        "id": job.request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": job.model,
        "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}
                    for i, (text, finish) in enumerate(replies)],
        "usage": usage_body(usage),
        "skillmoe": skillmoe,
    }
