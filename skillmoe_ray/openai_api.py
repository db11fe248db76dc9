"""The OpenAI-compatible surface of the service: request validation and response shapes.

Pure functions, so every rule (what makes a request malformed, what the answer looks like) is
tested without a server. The HTTP layer maps :class:`BadRequest` to a 400 with the message.

The ``model`` field selects the routing method: ``symbolic-moe`` (recruit.k experts),
``symbolic-moe-k<N>`` (N experts), or a baseline (``majority-vote``, ``single``,
``self-consistency``, ``task-level``, ``random``, ``moa``, ``self-moa``). An optional ``skillmoe``
object carries ``route_only`` (skills, recruited experts and cost estimate, no answer generation),
``choices`` (options of a multiple-choice question) and ``answer_type`` (auto, choice, math).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass

from skillmoe_ray.errors import SkillMoEError

BASELINES = {
    "majority-vote": "majority_vote",
    "single": "single",
    "self-consistency": "self_consistency",
    "task-level": "task_level",
    "random": "random",
    "moa": "moa",
    "self-moa": "self_moa",
}
MAX_K = 8
_K_MODEL = re.compile(r"^symbolic-moe-k(\d+)$")


class BadRequest(SkillMoEError):
    """A request the service cannot accept (HTTP 400); the message says what is wrong."""


@dataclass(frozen=True)
class Job:
    """One validated question to answer (or only route)."""

    request_id: str
    model: str
    method: str
    k: int
    question: str
    choices: tuple[str, ...] | None = None
    answer_type: str = "auto"
    route_only: bool = False


def model_names(default_k: int) -> list[str]:
    """Every value the ``model`` field accepts."""
    return ["symbolic-moe", *(f"symbolic-moe-k{k}" for k in range(1, MAX_K + 1)), *BASELINES]


def resolve_model(name: str, default_k: int) -> tuple[str, int]:
    """(method, k) for a model name; BadRequest listing the valid names otherwise."""
    if name == "symbolic-moe":
        return "symbolic_moe", default_k
    match = _K_MODEL.match(name)
    if match and 1 <= int(match.group(1)) <= MAX_K:
        return "symbolic_moe", int(match.group(1))
    if name in BASELINES:
        return BASELINES[name], default_k
    raise BadRequest(f"unknown model {name!r}; valid models: {', '.join(model_names(default_k))} (see GET /v1/models)")


def _question(messages: object) -> str:
    """The last user message's text; BadRequest when messages are missing or malformed."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required: a non-empty list of {\"role\": ..., \"content\": ...} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise BadRequest(f"messages[{i}] must be an object with 'role' and 'content'")
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise BadRequest("'messages' has no user message: the question is the last message with role 'user'")
    content = users[-1]["content"]
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(_text_part(part, i) for i, part in enumerate(content))
    if not isinstance(content, str) or not content.strip():
        raise BadRequest("the question (the last user message) is empty")
    return content.strip()


def _text_part(part: object, index: int) -> str:
    """The text of one OpenAI content part; only text parts are understood."""
    if not isinstance(part, dict) or part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
        raise BadRequest(f"content part {index} of the last user message must be {{\"type\": \"text\", \"text\": "
                         "a string}; only text parts are supported")
    return part["text"]


def _options(raw: object) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("'skillmoe' must be an object, e.g. {\"route_only\": true}")
    unknown = sorted(set(raw) - {"route_only", "choices", "answer_type"})
    if unknown:
        raise BadRequest(f"unknown skillmoe option {unknown[0]!r}; valid: answer_type, choices, route_only")
    choices = raw.get("choices")
    if choices is not None and (not isinstance(choices, list) or not 2 <= len(choices) <= 10):
        raise BadRequest("skillmoe.choices must be a list of 2 to 10 option strings")
    if raw.get("answer_type", "auto") not in ("auto", "choice", "math"):
        raise BadRequest("skillmoe.answer_type must be auto, choice or math")
    if not isinstance(raw.get("route_only", False), bool):
        raise BadRequest(f"skillmoe.route_only must be true or false, got {raw['route_only']!r}")
    return raw


def parse_request(body: bytes, max_bytes: int, default_k: int) -> Job:
    """Validate a /v1/chat/completions body into a Job, or raise BadRequest naming the problem."""
    if len(body) > max_bytes:
        raise BadRequest(f"request body is {len(body)} bytes; the limit is {max_bytes}")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply to be a chat request") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    question = _question(data.get("messages"))
    model = data.get("model") or "symbolic-moe"
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string")
    method, k = resolve_model(model, default_k)
    options = _options(data.get("skillmoe"))
    choices = options.get("choices")
    return Job(
        request_id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
        model=model,
        method=method,
        k=k,
        question=question,
        choices=tuple(str(c) for c in choices) if choices else None,
        answer_type=options.get("answer_type", "auto"),
        route_only=options.get("route_only", False),
    )


def completion_response(job: Job, content: str, finish_reason: str, usage: dict, skillmoe: dict) -> dict:
    """An OpenAI chat.completion object, with the routing details under ``skillmoe``."""
    return {
        "id": job.request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": job.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0),
        },
        "skillmoe": skillmoe,
    }


def models_response(default_k: int) -> dict:
    """The /v1/models list."""
    return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "skillmoe-ray"} for m in model_names(default_k)]}


def error_body(message: str, kind: str, code: int) -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "code": code}}
