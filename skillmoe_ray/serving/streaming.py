"""The streamed reply: OpenAI ``chat.completion.chunk`` objects framed as server-sent events.

Pure, so the framing is tested without a server. A stream is: a role chunk at once (the client sees
the reply start while the experts work), keep-alive comments while it waits, the reply's content,
a finish chunk with ``finish_reason``, and ``data: [DONE]``. The last chunk before ``[DONE]`` carries
``usage`` and the routing details (``skillmoe``): the finish chunk itself, or, when the request set
``stream_options.include_usage``, the extra chunk with empty ``choices`` that OpenAI's spec adds (every
other chunk then has ``"usage": null``, as the spec says).

The answer exists only once the aggregator has written it, and the engines generate whole replies (no
token streaming through the engine interface), so the content arrives as one chunk after aggregation.
"""

from __future__ import annotations

import json

from skillmoe_ray.serving.errors import error_body
from skillmoe_ray.serving.openai_api import Job, usage_body

DONE = "data: [DONE]\n\n"
# An SSE comment: clients ignore it, proxies and idle timeouts see traffic while the experts work.
KEEPALIVE = ": keep-alive\n\n"


def event(payload: dict) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def chunk(job: Job, created: int, choices: list[dict], **extra) -> dict:
    """A chat.completion.chunk of ``job``'s reply.

    ``usage: null`` when the request asked for a usage chunk.
    """
    body = {
        "id": job.request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": job.model,
        "choices": choices,
    }
    if job.include_usage:
        body["usage"] = None
    return {**body, **extra}


def role_event(job: Job, created: int) -> str:
    """The first event: the assistant's role (of each of the ``n`` choices), sent before any work is done."""
    roles = [
        {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        for i in range(job.n)
    ]
    return event(chunk(job, created, roles))


def reply_events(
    job: Job, created: int, replies: list[tuple[str, str]], usage: dict, skillmoe: dict
) -> list[str]:
    """Every event after the role chunk, ``[DONE]`` included; ``replies``: (content, finish_reason) of each
    choice."""
    events = [
        event(chunk(job, created, [{"index": i, "delta": {"content": content}, "finish_reason": None}]))
        for i, (content, _) in enumerate(replies)
        if content
    ]
    finish = [{"index": i, "delta": {}, "finish_reason": reason} for i, (_, reason) in enumerate(replies)]
    last = {"usage": usage_body(usage), "skillmoe": skillmoe}
    if job.include_usage:
        events += [event(chunk(job, created, finish)), event(chunk(job, created, [], **last))]
    else:
        events.append(event(chunk(job, created, finish, **last)))
    return [*events, DONE]


def error_events(message: str, status: int, request_id: str | None = None) -> list[str]:
    """A failure after the stream began (its HTTP status is already 200): an error event, then ``[DONE]``.

    OpenAI's client raises ``APIError`` with this message on such an event.
    """
    return [event(error_body(message, status, request_id=request_id)), DONE]
